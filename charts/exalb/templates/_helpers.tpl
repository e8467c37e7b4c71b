{{/*
Names, labels and small shared snippets. Every object carries the recommended
app.kubernetes.io labels; selectors use only name, instance and component (immutable).
*/}}

{{- define "exalb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "exalb.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "exalb.controller.fullname" -}}
{{- printf "%s-controller" (include "exalb.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "exalb.speaker.fullname" -}}
{{- printf "%s-speaker" (include "exalb.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "exalb.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "exalb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: exalb
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "controller") */}}
{{- define "exalb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "exalb.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "exalb.componentLabels" -}}
{{ include "exalb.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "exalb.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create -}}
{{- default (include "exalb.controller.fullname" .) .Values.controller.serviceAccount.name -}}
{{- else -}}
{{- required "controller.serviceAccount.name is required when controller.serviceAccount.create is false" .Values.controller.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "exalb.speaker.serviceAccountName" -}}
{{- if .Values.speaker.serviceAccount.create -}}
{{- default (include "exalb.speaker.fullname" .) .Values.speaker.serviceAccount.name -}}
{{- else -}}
{{- required "speaker.serviceAccount.name is required when speaker.serviceAccount.create is false" .Values.speaker.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the garp sidecars' probe key (chart-managed unless garp.keySecret). */}}
{{- define "exalb.garp.keySecretName" -}}
{{- default (printf "%s-garp-key" (include "exalb.fullname" .) | trunc 63 | trimSuffix "-") .Values.garp.keySecret -}}
{{- end -}}

{{- define "exalb.leaseName" -}}
{{- default (include "exalb.controller.fullname" .) .Values.controller.leaderElection.leaseName -}}
{{- end -}}

{{/* The one image every container runs. */}}
{{- define "exalb.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "exalb.logLevel" -}}
{{- default .ctx.Values.logLevel .level -}}
{{- end -}}

{{/* The speaker pod's two shared volumes: speaker <-> exabgp (ExaBGP config, bridge socket,
CLI FIFOs) and speaker <-> garp (L2 state and status). */}}
{{- define "exalb.bgpDir" -}}/run/exalb/bgp{{- end -}}
{{- define "exalb.l2Dir" -}}/run/exalb/l2{{- end -}}
{{- define "exalb.bfdDir" -}}/run/exalb/bfd{{- end -}}

{{/* The BGP password Secrets the speaker may get: speaker.secretNames plus every
config.peers[].spec.passwordSecret.name, sorted, once each (a JSON list). */}}
{{- define "exalb.speaker.secretNames" -}}
{{- $names := list -}}
{{- range .Values.speaker.secretNames -}}
{{- $names = append $names . -}}
{{- end -}}
{{- range .Values.config.peers -}}
{{- with (dig "spec" "passwordSecret" "name" "" .) -}}
{{- $names = append $names . -}}
{{- end -}}
{{- end -}}
{{- if and $.Values.garp.enabled (has (include "exalb.garp.keySecretName" $) $names) -}}
{{- fail (printf "speaker.secretNames: %s is the garp probe key; the speaker must not read it" (include "exalb.garp.keySecretName" $)) -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}
