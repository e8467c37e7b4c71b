// Package v1beta1 is the part of frr-k8s v0.0.27's API that v0.0.26 lacks and MetalLB
// v0.16.2 compiles against. build.sh drops this file next to v0.0.26's api/v1beta1 and
// adds one field to Advertise; see ../go.mod.
package v1beta1

// AsPathPrependPrefixes is a set of prefixes announced with the local AS prepended
// AsPathPrepend more times. Only MetalLB's frr-k8s mode fills it; the benchmark never
// uses that mode, so the shape only has to match what MetalLB's code writes.
type AsPathPrependPrefixes struct {
	// Prefixes the prepend applies to.
	Prefixes []string `json:"prefixes,omitempty"`
	// AsPathPrepend is how many extra times the local AS is prepended.
	AsPathPrepend uint8 `json:"asPathPrepend,omitempty"`
}

// DeepCopyInto copies the receiver into out.
func (in *AsPathPrependPrefixes) DeepCopyInto(out *AsPathPrependPrefixes) {
	*out = *in
	if in.Prefixes != nil {
		out.Prefixes = append([]string(nil), in.Prefixes...)
	}
}
