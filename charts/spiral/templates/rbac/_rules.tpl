{{/*
The operator's rules, least privilege. They are generated from the operator's own list
(operator/spiral_operator/rbac.py, `python -m spiral_operator.rbac`) into files/rbac/ and granted
unchanged, by the ClusterRole (rbac.scope=cluster) or by one Role per watched namespace
(rbac.scope=namespace). All of them are namespaced: the operator runs Kopf standalone (no peering
objects) with resource scanning off (no CRD or Namespace watch), so nothing cluster-scoped is needed.
*/}}
{{- define "spiral.rbac.operatorRules" -}}
{{- $file := .Files.Get "files/rbac/operator-rules.yaml" | fromYaml }}
{{- if hasKey $file "Error" }}
{{- fail (printf "files/rbac/operator-rules.yaml is not valid YAML: %s" $file.Error) }}
{{- end }}
{{- if not $file.rules }}
{{- fail "files/rbac/operator-rules.yaml has no rules; regenerate it: python -m spiral_operator.rbac > charts/spiral/files/rbac/operator-rules.yaml" }}
{{- end }}
{{- toYaml $file.rules }}
{{- end }}
