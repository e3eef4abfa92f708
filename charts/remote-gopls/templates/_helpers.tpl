{{/*
Names, labels and the values every template shares.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "remote-gopls.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name: fullnameOverride, else the release name,
with the chart name added unless the release name already contains it.
Kubernetes names are at most 63 characters.
*/}}
{{- define "remote-gopls.fullname" -}}
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

{{/* Labels that select the pod; they must never change after install. */}}
{{- define "remote-gopls.selectorLabels" -}}
app.kubernetes.io/name: {{ include "remote-gopls.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "remote-gopls.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "remote-gopls.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "remote-gopls.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "remote-gopls.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "remote-gopls.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The ports both Services expose, named so that probes, Ingresses and the
ServiceMonitor refer to them by name.
*/}}
{{- define "remote-gopls.servicePorts" -}}
- name: grpc
  port: {{ .Values.server.grpc.port }}
  targetPort: grpc
  protocol: TCP
  appProtocol: {{ .Values.server.grpc.appProtocol }}
- name: http
  port: {{ .Values.server.http.port }}
  targetPort: http
  protocol: TCP
  appProtocol: {{ .Values.server.http.appProtocol }}
{{- end -}}

{{/* The Secret that contains the tokens file, and its key. */}}
{{- define "remote-gopls.tokensSecretName" -}}
{{- default (printf "%s-tokens" (include "remote-gopls.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "remote-gopls.tokensSecretKey" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecretKey -}}
{{- else -}}
tokens
{{- end -}}
{{- end -}}

{{/* Where the pod mounts the tokens Secret, and the file the server reads. */}}
{{- define "remote-gopls.tokensDir" -}}
/etc/remote-gopls-secrets
{{- end -}}

{{/*
Converts a memory size to a whole number of bytes, printed without exponent.
Takes (list VALUE NAME), where NAME is the value's path for error messages.
Accepts Kubernetes quantities (8Gi, 512M) and the server's sizes (2GiB,
1.5GiB, 512MB) case-insensitively, as the server does, so "m" is mega, not
Kubernetes' milli. A bare YAML number is bytes.
*/}}
{{- define "remote-gopls.bytes" -}}
{{- $value := index . 0 -}}
{{- $name := index . 1 -}}
{{- if or (kindIs "float64" $value) (kindIs "int" $value) (kindIs "int64" $value) -}}
{{- printf "%.0f" (float64 $value) -}}
{{- else -}}
{{- $text := lower (nospace (toString $value)) -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $text -}}
{{- $unit := trimPrefix $number $text -}}
{{- $units := dict "" 1 "b" 1 "k" 1000 "kb" 1000 "ki" 1024 "kib" 1024 "m" 1000000 "mb" 1000000 "mi" 1048576 "mib" 1048576 "g" 1000000000 "gb" 1000000000 "gi" 1073741824 "gib" 1073741824 "t" 1000000000000 "tb" 1000000000000 "ti" 1099511627776 "tib" 1099511627776 -}}
{{- if or (not $number) (not (hasKey $units $unit)) -}}
{{- fail (printf "invalid %s %q: write a number with an optional unit such as 8Gi, 512Mi, 2GiB or 1.5GiB" $name (toString $value)) -}}
{{- end -}}
{{- printf "%.0f" (floor (mulf (float64 $number) (get $units $unit))) -}}
{{- end -}}
{{- end -}}

{{/*
The server's memory budget (controller.memory_budget): the configured value,
else budgetFraction of the container's memory limit, in MiB. Fails when no
budget can be computed or when one gopls instance would not fit in it.
NOTE: the chart always sets the budget because the server's own fallback,
budget_fraction of its cgroup's limit, reads the wrong group after the
server has moved into its `server` leaf group (delegated mode on cgroup v2).
There the leaf's memory.max is "max", so the server would use the node's
memory instead.
*/}}
{{- define "remote-gopls.memoryBudget" -}}
{{- $controller := .Values.server.controller -}}
{{- $limit := dig "limits" "memory" "" (.Values.resources | default dict) -}}
{{- $budget := "" -}}
{{- if $controller.memoryBudget -}}
{{- $budget = $controller.memoryBudget -}}
{{- else if $limit -}}
{{- $fraction := float64 $controller.budgetFraction -}}
{{- if or (le $fraction 0.0) (gt $fraction 1.0) -}}
{{- fail (printf "invalid server.controller.budgetFraction %v: must be greater than 0 and at most 1" $controller.budgetFraction) -}}
{{- end -}}
{{- $bytes := include "remote-gopls.bytes" (list $limit "resources.limits.memory") | float64 -}}
{{- $budget = printf "%.0fMiB" (floor (divf (mulf $bytes $fraction) 1048576)) -}}
{{- else -}}
{{- fail "resources.limits.memory is required: it bounds the server and every gopls together, and the memory budget is computed from it (or set server.controller.memoryBudget)" -}}
{{- end -}}
{{- $budgetBytes := include "remote-gopls.bytes" (list $budget "server.controller.memoryBudget") | float64 -}}
{{- $instances := list (list .Values.server.memoryLimit "server.memoryLimit") -}}
{{- range $name, $workspace := .Values.server.workspaces -}}
{{- with ($workspace | default dict).memoryLimit -}}
{{- $instances = append $instances (list . (printf "server.workspaces.%s.memoryLimit" $name)) -}}
{{- end -}}
{{- end -}}
{{- range $instances -}}
{{- $instanceBytes := include "remote-gopls.bytes" . | float64 -}}
{{- if gt $instanceBytes $budgetBytes -}}
{{- fail (printf "%s %v does not fit in the memory budget %s (server.controller.budgetFraction of resources.limits.memory, or server.controller.memoryBudget), so that workspace could never start; raise resources.limits.memory or lower the limit" (index . 1) (index . 0) $budget) -}}
{{- end -}}
{{- end -}}
{{- $budget -}}
{{- end -}}

{{/* A float for TOML, with a decimal point even when it is a whole number. */}}
{{- define "remote-gopls.float" -}}
{{- $text := toString (float64 .) -}}
{{- if regexMatch "^-?[0-9]+$" $text -}}
{{- printf "%s.0" $text -}}
{{- else -}}
{{- $text -}}
{{- end -}}
{{- end -}}

{{/*
server.toml, rendered from values with toToml (so every string is escaped
correctly). Numbers are converted to the TOML type the server reads:
integers for sizes and counts, floats for fractions, strings for the gopls
environment. Keys follow server/config/default.toml.
*/}}
{{- define "remote-gopls.serverToml" -}}
{{- $server := .Values.server -}}
{{- $config := dict -}}
{{- $_ := set $config "listen" (printf "%s:%d" $server.bindAddress (int $server.grpc.port)) -}}
{{- $_ := set $config "http_listen" (printf "%s:%d" $server.bindAddress (int $server.http.port)) -}}
{{- $_ := set $config "ws_ping_interval" (toString $server.http.wsPingInterval) -}}
{{- $_ := set $config "shutdown_grace" (toString $server.http.shutdownGrace) -}}
{{- $_ := set $config "data_dir" "/data/server" -}}
{{- if $server.workspacesDir -}}
{{- $_ := set $config "workspaces_dir" "/data/workspaces" -}}
{{- end -}}
{{- $_ := set $config "tokens_file" (printf "%s/tokens" (include "remote-gopls.tokensDir" .)) -}}
{{- $_ := set $config "max_message_size" (int64 $server.maxMessageSize) -}}
{{- $_ := set $config "memory_limit" (toString $server.memoryLimit) -}}
{{- with $server.memoryHigh -}}
{{- $_ := set $config "memory_high" (toString .) -}}
{{- end -}}
{{- $_ := set $config "gomemlimit_fraction" (float64 $server.gomemlimitFraction) -}}

{{- $cgroup := dict "enabled" (ne .Values.cgroups.mode "disabled") -}}
{{- with .Values.cgroups.parent -}}
{{- $_ := set $cgroup "parent" (toString .) -}}
{{- end -}}
{{- $_ := set $config "cgroup" $cgroup -}}

{{- $env := dict -}}
{{- range $key, $value := $server.goplsEnv -}}
{{- $_ := set $env $key (toString $value) -}}
{{- end -}}
{{- $_ := set $config "gopls_env" $env -}}
{{- $_ := set $config "gopls_settings" ($server.goplsSettings | default dict) -}}

{{- $controller := dict "memory_budget" (include "remote-gopls.memoryBudget" .) -}}
{{- $c := $server.controller -}}
{{- range $key, $value := dict "sample_interval" $c.sampleInterval "backoff_initial" $c.backoffInitial "backoff_max" $c.backoffMax "crash_loop_window" $c.crashLoopWindow "idle_timeout" $c.idleTimeout -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $_ := set $controller $key (toString $value) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := dict "warn_fraction" $c.warnFraction "restart_fraction" $c.restartFraction -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $_ := set $controller $key (float64 $value) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := dict "restart_samples" $c.restartSamples "crash_loop_restarts" $c.crashLoopRestarts "heap_profiles_kept" $c.heapProfilesKept -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $_ := set $controller $key (int64 $value) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "controller" $controller -}}

{{- $workspaces := dict -}}
{{- range $name, $values := $server.workspaces -}}
{{- $values = $values | default dict -}}
{{- $workspace := dict "path" (toString ($values.path | default (printf "/data/workspaces/%s" $name))) -}}
{{- with $values.memoryLimit -}}
{{- $_ := set $workspace "memory_limit" (toString .) -}}
{{- end -}}
{{- with $values.memoryHigh -}}
{{- $_ := set $workspace "memory_high" (toString .) -}}
{{- end -}}
{{- $workspaceEnv := dict -}}
{{- range $key, $value := $values.goplsEnv -}}
{{- $_ := set $workspaceEnv $key (toString $value) -}}
{{- end -}}
{{- if $workspaceEnv -}}
{{- $_ := set $workspace "gopls_env" $workspaceEnv -}}
{{- end -}}
{{- with $values.goplsSettings -}}
{{- $_ := set $workspace "gopls_settings" . -}}
{{- end -}}
{{- $_ := set $workspaces $name $workspace -}}
{{- end -}}
{{- if $workspaces -}}
{{- $_ := set $config "workspaces" $workspaces -}}
{{- end -}}
{{- toToml $config -}}
{{- end -}}

{{/*
Render-time checks of values that would otherwise only fail inside the pod.
*/}}
{{- define "remote-gopls.validate" -}}
{{- $modes := list "auto" "delegated" "disabled" -}}
{{- if not (has .Values.cgroups.mode $modes) -}}
{{- fail (printf "invalid cgroups.mode %q: use auto, delegated or disabled" (toString .Values.cgroups.mode)) -}}
{{- end -}}
{{- if and (not .Values.auth.existingSecret) .Values.auth.tokens -}}
{{- range $index, $entry := .Values.auth.tokens -}}
{{- $token := toString (dig "token" "" $entry) -}}
{{- if or (lt (len $token) 16) (regexMatch "\\s" $token) -}}
{{- fail (printf "invalid auth.tokens[%d].token: tokens are at least 16 characters without whitespace" $index) -}}
{{- end -}}
{{- if not (dig "workspaces" list $entry) -}}
{{- fail (printf "missing auth.tokens[%d].workspaces: list workspace names, or \"*\" for every workspace" $index) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
