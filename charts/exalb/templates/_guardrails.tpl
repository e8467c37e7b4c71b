{{/*
Install-time guardrails: what can be known to be wrong before anything runs is refused here,
with what was found and how to go on. Lookups see the live cluster on install/upgrade only
(`helm template` and client-side dry runs see an empty cluster, so they pass).
*/}}

{{/* MetalLB's workloads that serve the same Services: a list of "Kind ns/name" lines.
A workload is MetalLB's by its chart labels, an image of metallb/controller|speaker, or a
METALLB_* environment variable; one scaled to zero or serving another loadBalancerClass
does not count. */}}
{{- define "exalb.metallbWorkloads" -}}
{{- $found := list -}}
{{- range $kind := list "Deployment" "DaemonSet" -}}
{{- range $w := (lookup "apps/v1" $kind "" "").items | default list -}}
{{- $labels := $w.metadata.labels | default dict -}}
{{- $is := or (eq (get $labels "app.kubernetes.io/name") "metallb") (eq (get $labels "app") "metallb") -}}
{{- $class := "" -}}
{{- range $c := $w.spec.template.spec.containers -}}
{{- if or (contains "metallb/controller" ($c.image | default "")) (contains "metallb/speaker" ($c.image | default "")) -}}{{- $is = true -}}{{- end -}}
{{- range $e := $c.env | default list -}}{{- if hasPrefix "METALLB_" $e.name -}}{{- $is = true -}}{{- end -}}{{- end -}}
{{- range $a := concat ($c.command | default list) ($c.args | default list) -}}
{{- if hasPrefix "--lb-class=" $a -}}{{- $class = trimPrefix "--lb-class=" $a -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $mine := eq (get $labels "app.kubernetes.io/part-of") "exalb" -}}
{{- $scaledDown := and (eq $kind "Deployment") (hasKey $w.spec "replicas") (eq (int $w.spec.replicas) 0) -}}
{{- $otherClass := and $class (ne $class $.Values.loadBalancerClass) -}}
{{- if and $is (not $mine) (not $scaledDown) (not $otherClass) -}}
{{- $found = append $found (printf "%s %s/%s" $kind $w.metadata.namespace $w.metadata.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $found -}}
{{- end -}}

{{/* Host ports (TCP) MetalLB's host-network pods use (declared, or a --*port=N flag): a
JSON map port -> "DaemonSet ns/name". */}}
{{- define "exalb.metallbHostPorts" -}}
{{- $ports := dict -}}
{{- range $w := (lookup "apps/v1" "DaemonSet" "" "").items | default list -}}
{{- $labels := $w.metadata.labels | default dict -}}
{{- if and $w.spec.template.spec.hostNetwork (ne (get $labels "app.kubernetes.io/part-of") "exalb") -}}
{{- range $c := $w.spec.template.spec.containers -}}
{{- if or (contains "metallb" ($c.image | default "")) (eq (get $labels "app.kubernetes.io/name") "metallb") -}}
{{- $owner := printf "DaemonSet %s/%s" $w.metadata.namespace $w.metadata.name -}}
{{- range $p := $c.ports | default list -}}
{{- $_ := set $ports (toString $p.containerPort) $owner -}}
{{- end -}}
{{- /* ports a program binds without declaring them, e.g. --health-probe-port=17472 */ -}}
{{- range $a := concat ($c.command | default list) ($c.args | default list) -}}
{{- if regexMatch "^--[a-z-]*port=[0-9]+$" $a -}}
{{- $_ := set $ports (regexFind "[0-9]+$" $a) $owner -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $ports -}}
{{- end -}}

{{- define "exalb.guardrails" -}}
{{- $v := .Values -}}
{{- /* 1. the speaker pod's host-network TCP ports must differ from each other */ -}}
{{- if and $v.speaker.enabled $v.garp.enabled (eq (int $v.speaker.metricsPort) (int $v.garp.metricsPort)) -}}
{{- fail (printf "speaker.metricsPort and garp.metricsPort are both %d: the speaker pod runs on the host network, so they must differ" (int $v.speaker.metricsPort)) -}}
{{- end -}}
{{- /* 2. MetalLB still running */ -}}
{{- $metallb := include "exalb.metallbWorkloads" . | fromJsonArray -}}
{{- $hook := lookup "admissionregistration.k8s.io/v1" "ValidatingWebhookConfiguration" "" "metallb-webhook-configuration" -}}
{{- if $hook -}}{{- $metallb = append $metallb "ValidatingWebhookConfiguration metallb-webhook-configuration" -}}{{- end -}}
{{- if and $metallb (not $v.guardrails.allowMetalLB) -}}
{{- fail (printf "\n\nMetalLB runs in this cluster (%s).\nexalb and MetalLB would both serve the same Services: two controllers writing their IPs, two speakers announcing from the same node addresses.\nRemove MetalLB first (keep its CRDs: your IPAddressPools, BGPPeers, ... are exalb's config), or, for a migration that starts exalb's speakers before MetalLB's are removed, install with --set guardrails.allowMetalLB=true (README: \"Migrating from MetalLB\").\n" (join ", " $metallb)) -}}
{{- end -}}
{{- /* 3. host ports taken by MetalLB's speaker (only when running side by side) */ -}}
{{- if and $metallb $v.speaker.enabled -}}
{{- $taken := include "exalb.metallbHostPorts" . | fromJson -}}
{{- $mine := dict "speaker.metricsPort" $v.speaker.metricsPort -}}
{{- if $v.garp.enabled -}}{{- $_ := set $mine "garp.metricsPort" $v.garp.metricsPort -}}{{- end -}}
{{- range $key, $port := $mine -}}
{{- $owner := get $taken (toString (int $port)) -}}
{{- if $owner -}}
{{- fail (printf "%s %d is taken on every node by MetalLB's %s (host network): choose another port while both run, e.g. --set %s=%d" $key (int $port) $owner $key (add (int $port) 100)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* 4. another exalb release serving the same Services with the same component */ -}}
{{- range $w := concat ((lookup "apps/v1" "DaemonSet" "" "").items | default list) ((lookup "apps/v1" "Deployment" "" "").items | default list) -}}
{{- $labels := $w.metadata.labels | default dict -}}
{{- $component := get $labels "app.kubernetes.io/component" -}}
{{- $other := or (ne $w.metadata.namespace $.Release.Namespace) (ne (get $labels "app.kubernetes.io/instance") $.Release.Name) -}}
{{- $enabled := get (get $.Values $component | default dict) "enabled" -}}
{{- if and (eq (get $labels "app.kubernetes.io/part-of") "exalb") (has $component (list "speaker" "controller")) $other $enabled -}}
{{- $class := "" -}}
{{- range $c := $w.spec.template.spec.containers -}}{{- range $a := $c.args | default list -}}{{- if hasPrefix "--lb-class=" $a -}}{{- $class = trimPrefix "--lb-class=" $a -}}{{- end -}}{{- end -}}{{- end -}}
{{- if eq $class $.Values.loadBalancerClass -}}
{{- fail (printf "another exalb %s (%s/%s, release %s) already serves the Services of loadBalancerClass %q: upgrade that release instead, or give this one another loadBalancerClass (or %s.enabled=false)" $component $w.metadata.namespace $w.metadata.name (get $labels "app.kubernetes.io/instance") (default "<unset>" $class) $component) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* 5. kube-proxy IPVS without strictARP while L2 mode is configured */ -}}
{{- if and $v.garp.enabled (not $v.guardrails.allowIPVSWithoutStrictARP) (eq (include "exalb.l2Configured" .) "true") -}}
{{- $cm := lookup "v1" "ConfigMap" "kube-system" "kube-proxy" -}}
{{- range $key, $text := ($cm.data | default dict) -}}
{{- $conf := fromYaml $text -}}
{{- if and (eq (toString $conf.mode) "ipvs") (not (($conf.ipvs | default dict).strictARP)) -}}
{{- fail (printf "\n\nkube-proxy runs in IPVS mode without strictARP (ConfigMap kube-system/kube-proxy, %s) and L2 mode is configured: every node would answer ARP for every Service IP.\nSet ipvs.strictARP: true (kubectl -n kube-system edit configmap kube-proxy; then kubectl -n kube-system rollout restart daemonset kube-proxy), or install with --set guardrails.allowIPVSWithoutStrictARP=true.\n" $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "true" when L2 mode is configured: in values.config, as L2Advertisements in the release
namespace, or as a legacy ConfigMap with protocol layer2. */}}
{{- define "exalb.l2Configured" -}}
{{- $l2 := gt (len .Values.config.l2Advertisements) 0 -}}
{{- if .Capabilities.APIVersions.Has "metallb.io/v1beta1/L2Advertisement" -}}
{{- if (lookup "metallb.io/v1beta1" "L2Advertisement" .Release.Namespace "").items -}}{{- $l2 = true -}}{{- end -}}
{{- end -}}
{{- $legacy := lookup "v1" "ConfigMap" .Release.Namespace .Values.configMapName -}}
{{- if contains "layer2" (get ($legacy.data | default dict) "config" | default "") -}}{{- $l2 = true -}}{{- end -}}
{{- toString $l2 -}}
{{- end -}}
