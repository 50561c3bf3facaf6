{{/*
Names and labels shared by every template. Kubernetes names are DNS labels: at most 63 characters,
so every name is truncated and stripped of a trailing "-".
*/}}

{{/* The chart name (nameOverride wins). */}}
{{- define "spiral.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource-name prefix: fullnameOverride, else "<release>-<name>" unless the release already contains the name. */}}
{{- define "spiral.fullname" -}}
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

{{/* A component's name, "<fullname>-<component>", cut to 63 characters; the component suffix is kept whole. */}}
{{- define "spiral.componentName" -}}
{{- $suffix := printf "-%s" .component }}
{{- $prefix := include "spiral.fullname" .root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s%s" $prefix $suffix }}
{{- end }}

{{- define "spiral.operatorName" -}}
{{- include "spiral.componentName" (dict "root" . "component" "operator") }}
{{- end }}

{{/* "name-version" for the helm.sh/chart label ("+" is not allowed in label values). */}}
{{- define "spiral.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "spiral.labels" -}}
helm.sh/chart: {{ include "spiral.chart" . }}
{{ include "spiral.selectorLabels" . }}
app.kubernetes.io/part-of: spiral
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "spiral.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spiral.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Operator labels: the standard set plus the component. */}}
{{- define "spiral.operatorLabels" -}}
{{ include "spiral.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "spiral.operatorSelectorLabels" -}}
{{ include "spiral.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "spiral.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spiral.operatorName" .) .Values.serviceAccount.name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: a digest pins it and wins over the tag; the tag defaults to appVersion. */}}
{{- define "spiral.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Namespaces the operator watches with rbac.scope=namespace (the release namespace by default). */}}
{{- define "spiral.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces }}
{{- join "," .Values.operator.watchNamespaces }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
The operator's arguments: operator.args verbatim, else derived from the scope, ports and logging.
Rendered as a YAML list; spiral_operator.__main__.parse_args must accept it (tests/chart/test_chart_operator.py).
*/}}
{{- define "spiral.operatorArgs" -}}
{{- if .Values.operator.args }}
{{- toYaml .Values.operator.args }}
{{- else }}
{{- $args := list }}
{{- if eq .Values.rbac.scope "cluster" }}
{{- $args = append $args "--all-namespaces" }}
{{- else }}
{{- range (include "spiral.watchNamespaces" . | splitList ",") }}
{{- $args = append $args (printf "--namespace=%s" .) }}
{{- end }}
{{- end }}
{{- $args = append $args (printf "--metrics-port=%d" (int .Values.operator.metricsPort)) }}
{{- $args = append $args (printf "--liveness=http://0.0.0.0:%d/healthz" (int .Values.operator.healthPort)) }}
{{- if eq .Values.logging.level "debug" }}
{{- $args = append $args "--debug" }}
{{- else if eq .Values.logging.level "warning" }}
{{- $args = append $args "--quiet" }}
{{- end }}
{{- $args = append $args (printf "--log-format=%s" .Values.logging.format) }}
{{- $args = concat $args .Values.operator.extraArgs }}
{{- toYaml $args }}
{{- end }}
{{- end }}
