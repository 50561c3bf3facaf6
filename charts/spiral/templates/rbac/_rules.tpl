{{/*
The operator's permissions, least privilege: exactly what the reconcilers touch. Shared by the
ClusterRole (rbac.scope=cluster) and the per-namespace Roles (rbac.scope=namespace).
*/}}
{{- define "spiral.rbac.namespacedRules" -}}
- apiGroups: ["spiral.dev"]
  resources: ["spiraljobs"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["spiral.dev"]
  resources: ["spiraljobs/status", "spiraljobs/scale"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
# Kopf posts its per-object log lines as Events through either API.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
{{- end }}

{{/* Cluster-scoped reads Kopf needs in either mode: the CRD it serves. */}}
{{- define "spiral.rbac.crdRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}
