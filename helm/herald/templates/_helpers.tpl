{{/*
Chart name, truncated to the 63 characters DNS labels allow.
*/}}
{{- define "herald.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the
release name already contains it.
*/}}
{{- define "herald.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "herald.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "herald.labels" -}}
helm.sh/chart: {{ include "herald.chart" . }}
{{ include "herald.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "herald.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herald.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the Secret holding HERALD_JWT_SECRET, HERALD_ADMIN_KEY and
HERALD_API_KEY.
*/}}
{{- define "herald.secretName" -}}
{{- default (include "herald.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
The ServiceAccount's name.
*/}}
{{- define "herald.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "herald.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: by digest when one is given.
*/}}
{{- define "herald.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The fewest replicas that run: replicaCount, or the autoscaler's minimum.
*/}}
{{- define "herald.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas | int }}{{ else }}{{ .Values.replicaCount | int }}{{ end }}
{{- end }}

{{/*
The most replicas that run: replicaCount, or the autoscaler's maximum.
*/}}
{{- define "herald.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.maxReplicas | int }}{{ else }}{{ .Values.replicaCount | int }}{{ end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the not-ready period plus the drain window,
plus 10 s for the gateway's own 3 s grace and the kubelet. The one place the
formula lives (the Deployment and NOTES.txt both use it).
*/}}
{{- define "herald.gracePeriodSeconds" -}}
{{- add (div (add (int .Values.unreadyMs) (int .Values.drainMs)) 1000) 10 }}
{{- end }}

{{/*
Whether any Redis is named by the chart's values.
*/}}
{{- define "herald.redisSet" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret .Values.redis.nodes }}true{{ end }}
{{- end }}

{{/*
Values that contradict each other: refused at install with the keys named.
*/}}
{{- define "herald.checkValues" -}}
{{- $r := .Values.redis }}
{{- if and (or $r.url $r.existingSecret) $r.nodes }}
{{- fail "redis.nodes: give either redis.url / redis.existingSecret or redis.nodes, not both" }}
{{- end }}
{{- if and $r.url $r.existingSecret }}
{{- fail "redis.existingSecret: give either redis.url or redis.existingSecret, not both" }}
{{- end }}
{{- if and (or $r.mode $r.serviceName $r.tls.enabled) (not $r.nodes) }}
{{- fail "redis.nodes: redis.mode, redis.serviceName and redis.tls.enabled belong to the explicit form; list the nodes (a URL sets them with its scheme)" }}
{{- end }}
{{- if and (eq $r.mode "sentinel") (not $r.serviceName) }}
{{- fail "redis.serviceName: sentinel mode needs the monitored primary's name" }}
{{- end }}
{{- if and $r.url (hasPrefix "rediss" $r.url | not) (or $r.tls.caSecret $r.tls.clientCertSecret) }}
{{- fail "redis.url: redis.tls.caSecret and redis.tls.clientCertSecret need TLS: use a rediss:// URL" }}
{{- end }}
{{- if and $r.nodes (not $r.tls.enabled) (or $r.tls.caSecret $r.tls.clientCertSecret) }}
{{- fail "redis.tls.enabled: redis.tls.caSecret and redis.tls.clientCertSecret need TLS: set redis.tls.enabled" }}
{{- end }}
{{- if and .Values.console.enabled (not .Values.secrets.apiKey) (not (and .Values.secrets.existingSecret .Values.secrets.keys.apiKey)) }}
{{- fail "console.enabled: the console signs in with the operator key; set secrets.apiKey (or secrets.keys.apiKey with secrets.existingSecret)" }}
{{- end }}
{{- if and (gt (include "herald.maxReplicas" . | int) 1) (not (include "herald.redisSet" .)) (not (regexMatch `(?m)^\s*\[redis\]` .Values.config)) }}
{{- fail "redis: more than one replica needs Redis (redis.url, redis.existingSecret or redis.nodes): with the embedded broker replicas share no events" }}
{{- end }}
{{- end }}
