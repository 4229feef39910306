{{/*
Library mode: add the Detour sidecar to a pod template without the admission webhook.

A chart that depends on this one (set `detour.injector.enabled: false` and, if it should create
nothing, `detour.rbac.createClusterRole: false`) can write:

  spec:
    initContainers:
      {{- include "detour.sidecar" (dict "image" "ghcr.io/detour-dev/detour:0.1.0") | nindent 6 }}
    containers:
      - name: app
        env:
          {{- include "detour.appEnv" (dict) | nindent 10 }}
    volumes:
      {{- include "detour.sidecarVolumes" (dict) | nindent 6 }}

Each template renders YAML list items ("- ..."), to go into an existing list. `detour.sidecar` renders
exactly the container `detour inject` adds (same fields, same order of env), from a dict of settings;
every key but `image` is optional, an unknown key is an error:

  image          the Detour image (required)
  imagePullPolicy  IfNotPresent
  configMap      detour-routes   routes ConfigMap in the pod's namespace (watch mode)
  configMapKey   routes.yaml
  secret         ""              Secret with provider keys -> envFrom
  port           8081            API port on 127.0.0.1
  healthPort     8083            probe port
  grpcPort       8082            gRPC API port on 127.0.0.1 (0: off)
  logLevel       info            debug | info | warning | error
  resources      {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}  ({} = none)
  telemetry      {otlpEndpoint, otlpProtocol, env: {NAME: value}}
  env            {NAME: value}   extra env; replaces a generated variable of the same name in place
  mode           native          native: an init container with restartPolicy Always (Kubernetes
                                 1.29+), goes in initContainers, first; container: goes in containers
  appName        ""              OTEL_SERVICE_NAME; default: podLabels app.kubernetes.io/name, else
  podLabels      {}              podLabels app, else "detour" (as the injector derives it)
*/}}
{{- define "detour.sidecar" -}}
{{- $s := . | default dict }}
{{- $known := list "image" "imagePullPolicy" "configMap" "configMapKey" "secret" "port" "healthPort" "grpcPort" "logLevel" "resources" "telemetry" "env" "mode" "appName" "podLabels" }}
{{- range $key, $_ := $s }}
{{- if not (has $key $known) }}
{{- fail (printf "detour.sidecar: unknown setting %q (known: %s)" $key (join ", " $known)) }}
{{- end }}
{{- end }}
{{- $image := required "detour.sidecar: the setting \"image\" is required" $s.image }}
{{- $mode := $s.mode | default "native" }}
{{- if not (has $mode (list "native" "container")) }}
{{- fail (printf "detour.sidecar: mode must be native or container, not %q" $mode) }}
{{- end }}
{{- $logLevel := $s.logLevel | default "info" }}
{{- if not (has $logLevel (list "debug" "info" "warning" "error")) }}
{{- fail (printf "detour.sidecar: logLevel must be debug, info, warning or error, not %q" $logLevel) }}
{{- end }}
{{- $port := $s.port | default 8081 | int }}
{{- $healthPort := $s.healthPort | default 8083 | int }}
{{- if eq $port $healthPort }}
{{- fail "detour.sidecar: port and healthPort must differ" }}
{{- end }}
{{- $grpcPort := 8082 }}
{{- if hasKey $s "grpcPort" }}{{ $grpcPort = int $s.grpcPort }}{{ end }}
{{- if or (eq $grpcPort $port) (eq $grpcPort $healthPort) }}
{{- fail "detour.sidecar: grpcPort must differ from port and healthPort" }}
{{- end }}
{{- $resources := dict "requests" (dict "cpu" "50m" "memory" "64Mi") "limits" (dict "memory" "256Mi") }}
{{- if hasKey $s "resources" }}
{{- $resources = dict }}
{{- range $kind, $values := $s.resources | default dict }}
{{- if $values }}{{ $_ := set $resources $kind $values }}{{ end }}
{{- end }}
{{- end }}
{{- $telemetry := $s.telemetry | default dict }}
{{- $labels := $s.podLabels | default dict }}
{{- $appName := $s.appName | default (index $labels "app.kubernetes.io/name") | default (index $labels "app") | default "detour" }}

{{- /* env: the downward API, then telemetry, then the settings' own variables */}}
{{- $env := list (dict "name" "POD_NAMESPACE" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.namespace"))) (dict "name" "POD_NAME" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.name"))) }}
{{- with $telemetry.otlpEndpoint }}
{{- $env = append $env (dict "name" "OTEL_EXPORTER_OTLP_ENDPOINT" "value" (toString .)) }}
{{- with $telemetry.otlpProtocol }}
{{- $env = append $env (dict "name" "OTEL_EXPORTER_OTLP_PROTOCOL" "value" (toString .)) }}
{{- end }}
{{- $env = append $env (dict "name" "OTEL_SERVICE_NAME" "value" (toString $appName)) }}
{{- $env = append $env (dict "name" "K8S_POD_NAME" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.name"))) }}
{{- $env = append $env (dict "name" "K8S_POD_UID" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.uid"))) }}
{{- $env = append $env (dict "name" "K8S_NAMESPACE_NAME" "valueFrom" (dict "fieldRef" (dict "fieldPath" "metadata.namespace"))) }}
{{- $env = append $env (dict "name" "K8S_NODE_NAME" "valueFrom" (dict "fieldRef" (dict "fieldPath" "spec.nodeName"))) }}
{{- $env = append $env (dict "name" "K8S_CONTAINER_NAME" "value" "detour") }}
{{- end }}
{{- /* A variable named twice would hide a mistake (only the last counts): a given name replaces a
       generated one in place, as the injector does. Helm orders a map's keys by name. */}}
{{- range $extra := list ($telemetry.env | default dict) ($s.env | default dict) }}
{{- range $name, $value := $extra }}
{{- $entry := dict "name" $name "value" (toString $value) }}
{{- $replaced := list }}
{{- $found := false }}
{{- range $existing := $env }}
{{- if eq $existing.name $name }}
{{- $replaced = append $replaced $entry }}
{{- $found = true }}
{{- else }}
{{- $replaced = append $replaced $existing }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- $replaced = append $replaced $entry }}
{{- end }}
{{- $env = $replaced }}
{{- end }}
{{- end }}

{{- $container := dict
  "name" "detour"
  "image" $image
  "imagePullPolicy" ($s.imagePullPolicy | default "IfNotPresent")
  "args" (list "serve"
    "--configmap" (printf "$(POD_NAMESPACE)/%s" ($s.configMap | default "detour-routes"))
    "--configmap-key" ($s.configMapKey | default "routes.yaml")
    "--port" (toString $port)
    "--health-port" (toString $healthPort)
    "--grpc-port" (toString $grpcPort)
    "--log-level" $logLevel)
  "env" $env
  "ports" (list (dict "name" "detour-health" "containerPort" $healthPort "protocol" "TCP"))
  "startupProbe" (dict "httpGet" (dict "path" "/healthz" "port" $healthPort) "periodSeconds" 1 "failureThreshold" 30)
  "readinessProbe" (dict "httpGet" (dict "path" "/readyz" "port" $healthPort) "periodSeconds" 5 "failureThreshold" 2)
  "livenessProbe" (dict "httpGet" (dict "path" "/healthz" "port" $healthPort) "periodSeconds" 10 "failureThreshold" 3)
  "securityContext" (dict
    "runAsNonRoot" true
    "runAsUser" 65532
    "runAsGroup" 65532
    "readOnlyRootFilesystem" true
    "allowPrivilegeEscalation" false
    "capabilities" (dict "drop" (list "ALL"))
    "seccompProfile" (dict "type" "RuntimeDefault"))
  "volumeMounts" (list
    (dict "name" "detour-tmp" "mountPath" "/tmp")
    (dict "name" "detour-token" "mountPath" "/var/run/secrets/kubernetes.io/serviceaccount" "readOnly" true)) }}
{{- if eq $mode "native" }}
{{- $_ := set $container "restartPolicy" "Always" }}
{{- end }}
{{- with $s.secret }}
{{- $_ := set $container "envFrom" (list (dict "secretRef" (dict "name" .))) }}
{{- end }}
{{- if $resources }}
{{- $_ := set $container "resources" $resources }}
{{- end }}
{{- list $container | toYaml }}
{{- end }}

{{/*
The pod volumes the sidecar mounts: /tmp (its root filesystem is read-only), and its own projected
service-account token to watch its ConfigMap with, so it works even where the pod sets
automountServiceAccountToken: false to keep API credentials from the app.
*/}}
{{- define "detour.sidecarVolumes" -}}
- name: detour-tmp
  emptyDir: {}
- name: detour-token
  projected:
    defaultMode: 292
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                fieldPath: metadata.namespace
{{- end }}

{{/*
The environment of an application container: the official SDKs send their requests to the sidecar.
Takes a dict with the sidecar's `port` (default 8081).
*/}}
{{- define "detour.appEnv" -}}
{{- $port := (. | default dict).port | default 8081 | int -}}
- name: OPENAI_BASE_URL
  value: {{ printf "http://127.0.0.1:%d/v1" $port | quote }}
- name: ANTHROPIC_BASE_URL
  value: {{ printf "http://127.0.0.1:%d" $port | quote }}
{{- end }}
