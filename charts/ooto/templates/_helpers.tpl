{{- define "ooto.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ooto.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ooto.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ooto.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* The operator's pods only: the registry's pods share name and instance, never component. */}}
{{- define "ooto.operatorSelectorLabels" -}}
{{ include "ooto.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "ooto.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ooto.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ooto.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ooto.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ooto.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ooto.registryName" -}}
{{- printf "%s-registry" (include "ooto.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* Secrets and ConfigMaps: cluster-wide without watchNamespace, else a Role in it. */}}
{{- define "ooto.namespacedRules" -}}
# inline Dockerfiles for Kaniko builds
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, update, delete]
# only the registry Secret a Module names (get by name: no list, no watch)
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end -}}

{{- define "ooto.subjects" -}}
- kind: ServiceAccount
  name: {{ include "ooto.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- with .Values.rbac.extraSubjects }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "ooto.webhookName" -}}
{{- printf "%s-webhook" (include "ooto.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ooto.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "ooto.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* Where the operator reads tls.crt and tls.key (controller-runtime's default directory). */}}
{{- define "ooto.webhookCertDir" -}}
/tmp/k8s-webhook-server/serving-certs
{{- end -}}
