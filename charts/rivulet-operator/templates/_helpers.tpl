{{- define "rivulet.name" -}}rivulet-operator{{- end -}}

{{- define "rivulet.fullname" -}}
{{- if contains "rivulet-operator" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-rivulet-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rivulet.labels" -}}
app.kubernetes.io/name: {{ include "rivulet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rivulet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rivulet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rivulet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rivulet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Rules for the resources the operator manages in a watched namespace. Server-side apply
of an object that does not exist yet is authorized as `create`, so every applied kind needs it.
operator/tests/rbac.rs derives the verbs the code uses; test_chart.py checks they are granted. */}}
{{- define "rivulet.managedRules" -}}
- apiGroups: ["rivulet.dev"]
  resources: ["kafkaclusters", "kafkatopics", "kafkausers"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["rivulet.dev"]
  resources: ["kafkaclusters/status", "kafkatopics/status", "kafkausers/status"]
  verbs: ["get", "patch"]
- apiGroups: ["rivulet.dev"]
  resources: ["kafkaclusters/finalizers", "kafkatopics/finalizers", "kafkausers/finalizers"]
  verbs: ["update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* Cluster-scoped reads: StorageClasses decide whether broker volumes can grow. A Role can't
grant them, so this ClusterRole is rendered in namespaced mode too. */}}
{{- define "rivulet.clusterReadRules" -}}
- apiGroups: ["storage.k8s.io"]
  resources: ["storageclasses"]
  verbs: ["get", "list", "watch"]
{{- end -}}
