// The one frr-k8s v0.0.27 type MetalLB v0.16.2 compiles against and v0.0.26 lacks; build.sh
// adds it to v0.0.26's api/v1beta1 (with the Advertise field that holds it). Only MetalLB's
// frr-k8s mode fills it; the migration test runs the native mode.
package v1beta1

// AsPathPrependPrefixes lists prefixes sent with the local AS prepended AsPathPrepend times.
type AsPathPrependPrefixes struct {
	Prefixes      []string `json:"prefixes,omitempty"`
	AsPathPrepend uint8    `json:"asPathPrepend,omitempty"`
}
