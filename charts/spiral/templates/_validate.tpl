{{/*
Cross-field checks that values.schema.json cannot express. Each failure names the key, the value it
got and what is valid (STYLE.md §4). Included once, by operator/deployment.yaml, which always renders.
*/}}
{{- define "spiral.validateConfig" -}}
{{- $v := .Values }}
{{- if and (not $v.serviceAccount.create) (not $v.serviceAccount.name) }}
{{- fail (printf "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false (got serviceAccount.name=%q)" $v.serviceAccount.name) }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true (got metrics.service.enabled=false): the ServiceMonitor selects the metrics Service" }}
{{- end }}
{{- $allArgs := concat $v.operator.args $v.operator.extraArgs }}
{{- if eq $v.rbac.scope "namespace" }}
{{- range $allArgs }}
{{- if or (eq . "--all-namespaces") (eq . "-A") }}
{{- fail (printf "operator args contain %q but rbac.scope is \"namespace\": a namespaced Role cannot watch all namespaces; set rbac.scope=cluster or drop the flag" .) }}
{{- end }}
{{- end }}
{{- else }}
{{- if $v.operator.watchNamespaces }}
{{- fail (printf "operator.watchNamespaces=%v is only used with rbac.scope=namespace (got rbac.scope=%q); with \"cluster\" the operator watches every namespace" $v.operator.watchNamespaces $v.rbac.scope) }}
{{- end }}
{{- end }}
{{- if not $v.operator.args }}
{{- $derived := dict "--namespace" "rbac.scope and operator.watchNamespaces" "-n" "rbac.scope and operator.watchNamespaces" "--all-namespaces" "rbac.scope" "-A" "rbac.scope" "--metrics-port" "operator.metricsPort" "--liveness" "operator.healthPort" "--debug" "logging.level" "-d" "logging.level" "-v" "logging.level" "--verbose" "logging.level" "--quiet" "logging.level" "-q" "logging.level" "--log-format" "logging.format" }}
{{- range $v.operator.extraArgs }}
{{- $flag := regexReplaceAll "=.*$" (toString .) "" }}
{{- if hasKey $derived $flag }}
{{- fail (printf "operator.extraArgs contains %q, which the chart already derives from %s; set that value instead (or give the whole list in operator.args)" . (get $derived $flag)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $v.rbac.create (ne $v.rbac.scope "cluster") $v.metrics.jobs.podMonitor.enabled }}
{{- range $v.metrics.jobs.podMonitor.namespaces }}
{{- if not (has . (include "spiral.watchNamespaces" $ | splitList ",")) }}
{{- fail (printf "metrics.jobs.podMonitor.namespaces contains %q, which the operator does not watch with rbac.scope=namespace (watched: %s)" . (include "spiral.watchNamespaces" $)) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $m := dict "metrics.serviceMonitor" $v.metrics.serviceMonitor "metrics.jobs.podMonitor" $v.metrics.jobs.podMonitor }}
{{- if gt (include "spiral.durationSeconds" $m.scrapeTimeout | float64) (include "spiral.durationSeconds" $m.interval | float64) }}
{{- fail (printf "%s.scrapeTimeout=%s exceeds %s.interval=%s; Prometheus rejects a timeout longer than the interval" $key $m.scrapeTimeout $key $m.interval) }}
{{- end }}
{{- end }}
{{- if and $v.crds.install (not ($.Files.Get "files/crds/spiraljobs.spiral.dev.yaml")) }}
{{- fail "crds.install=true but the chart has no files/crds/spiraljobs.spiral.dev.yaml (generated from the operator's models); regenerate it or set crds.install=false" }}
{{- end }}
{{- end }}

{{/* A single-unit Prometheus duration ("500ms", "30s", "5m", "1h", "1d") in seconds; the schema admits no other form. */}}
{{- define "spiral.durationSeconds" -}}
{{- $n := regexFind "^[0-9]+" . | float64 }}
{{- $unit := regexReplaceAll "^[0-9]+" . "" }}
{{- $scale := get (dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 "d" 86400.0 "w" 604800.0) $unit }}
{{- mulf $n $scale }}
{{- end }}
