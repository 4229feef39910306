{{/* Names, labels and the image reference shared by every template. */}}

{{- define "detour.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
"<release>-<chart>", or the release name alone when it already contains the chart name. Truncated so
that "<fullname>-<suffix>" stays a valid DNS label for the Service and the ConfigMaps.
*/}}
{{- define "detour.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "detour.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels of every object. */}}
{{- define "detour.labels" -}}
helm.sh/chart: {{ include "detour.chart" . }}
app.kubernetes.io/name: {{ include "detour.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: detour
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the injector's objects; the selector labels are the immutable subset. */}}
{{- define "detour.injectorLabels" -}}
{{ include "detour.labels" . }}
app.kubernetes.io/component: injector
{{- end }}

{{- define "detour.injectorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "detour.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end }}

{{- define "detour.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "detour.sidecarImage" -}}
{{- default (include "detour.image" .) .Values.injector.sidecar.image }}
{{- end }}

{{- define "detour.injectorName" -}}
{{- printf "%s-injector" (include "detour.fullname" .) }}
{{- end }}

{{/* The Service the API server calls; the serving certificate names it. */}}
{{- define "detour.serviceName" -}}
{{- include "detour.injectorName" . }}
{{- end }}

{{- define "detour.serviceDNSNames" -}}
{{- $service := include "detour.serviceName" . }}
{{- list $service (printf "%s.%s" $service .Release.Namespace) (printf "%s.%s.svc" $service .Release.Namespace) | toJson }}
{{- end }}

{{/* The kubernetes.io/tls Secret the injector mounts: cert-manager's or the chart's own. */}}
{{- define "detour.tlsSecretName" -}}
{{- if .Values.certManager.enabled }}
{{- printf "%s-serving-cert" (include "detour.injectorName" .) }}
{{- else }}
{{- printf "%s-tls" (include "detour.injectorName" .) }}
{{- end }}
{{- end }}

{{- define "detour.servingCertificateName" -}}
{{- printf "%s-serving" (include "detour.injectorName" .) }}
{{- end }}

{{/*
inject.yaml of the injector, from injector.sidecar: the contract's snake_case keys. Empty optional
values are left out (every key of inject.yaml is optional).
*/}}
{{- define "detour.injectYaml" -}}
{{- $s := .Values.injector.sidecar }}
{{- if eq (int $s.port) (int $s.healthPort) }}
{{- fail "injector.sidecar.port and injector.sidecar.healthPort must differ" }}
{{- end }}
{{- if and (eq $s.mode "native") (semverCompare "<1.29-0" .Capabilities.KubeVersion.Version) }}
{{- fail (printf "injector.sidecar.mode native needs Kubernetes 1.29 or later (native sidecars); this cluster is %s: set injector.sidecar.mode=container" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- $telemetry := dict "env" $s.telemetry.env }}
{{- with $s.telemetry.otlpEndpoint }}{{ $_ := set $telemetry "otlp_endpoint" . }}{{ end }}
{{- with $s.telemetry.otlpProtocol }}{{ $_ := set $telemetry "otlp_protocol" . }}{{ end }}
{{- $config := dict
  "configmap" $s.configMap
  "configmap_key" $s.configMapKey
  "sidecar_mode" $s.mode
  "image_pull_policy" $s.imagePullPolicy
  "port" (int $s.port)
  "health_port" (int $s.healthPort)
  "grpc_port" (int $s.grpcPort)
  "log_level" $s.logLevel
  "resources" $s.resources
  "telemetry" $telemetry
  "env" $s.env }}
{{- with $s.secret }}{{ $_ := set $config "secret" . }}{{ end }}
{{- toYaml $config }}
{{- end }}
