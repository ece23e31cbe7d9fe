{{- define "ooto.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ooto.fullname" -}}
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

{{- /* "<fullname>-<suffix>" within 63 characters (a Service name is a DNS label): the fullname
       is cut, never the suffix, so that two names of one release never become equal.
       Usage: include "ooto.suffixed" (list . "metrics") */}}
{{- define "ooto.suffixed" -}}
{{- $root := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $base := include "ooto.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
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
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "ooto.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ooto.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- /* One image reference for every image the chart and the operator run:
       [registry/]repository(@digest|:tag). global.imageRegistry replaces each image's registry
       (one mirror for an air-gapped cluster); a digest wins over the tag; no repository: "".
       Usage: include "ooto.imageRef" (dict "image" .Values.image "root" . "defaultTag" "x") */}}
{{- define "ooto.imageRef" -}}
{{- $image := .image -}}
{{- if $image.repository -}}
{{- $registry := default $image.registry .root.Values.global.imageRegistry -}}
{{- $repository := $image.repository -}}
{{- if $registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository -}}
{{- end -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .defaultTag $image.tag | toString) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ooto.image" -}}
{{- include "ooto.imageRef" (dict "image" .Values.image "root" . "defaultTag" .Chart.AppVersion) -}}
{{- end -}}

{{- /* imagePullSecrets of every pod the chart runs: global ones, then the pod's own. */}}
{{- define "ooto.imagePullSecrets" -}}
{{- $root := index . 0 -}}
{{- $secrets := concat $root.Values.global.imagePullSecrets (index . 1) | uniq -}}
{{- with $secrets }}
imagePullSecrets:
  {{- range . }}
  - {{ if kindIs "string" . }}name: {{ . }}{{ else }}{{ toYaml . | trim }}{{ end }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "ooto.registryName" -}}
{{- include "ooto.suffixed" (list . "registry") -}}
{{- end -}}

{{- define "ooto.metricsName" -}}
{{- include "ooto.suffixed" (list . "metrics") -}}
{{- end -}}

{{- define "ooto.leaseName" -}}
{{- default (include "ooto.fullname" .) .Values.leaderElection.leaseName -}}
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
{{- include "ooto.suffixed" (list . "webhook") -}}
{{- end -}}

{{- define "ooto.webhookSecretName" -}}
{{- include "ooto.suffixed" (list . "webhook-tls") -}}
{{- end -}}

{{- /* Where the operator reads tls.crt and tls.key (controller-runtime's default directory). */}}
{{- define "ooto.webhookCertDir" -}}
/tmp/k8s-webhook-server/serving-certs
{{- end -}}

{{- /* The operator's environment: the chart's OOTO_* settings, then extraEnv. An extraEnv
       entry with a name the chart sets replaces the chart's (the user wins; Kubernetes refuses
       duplicate names on apply). Values are strings: `--set extraEnv[0].value=120` is no int. */}}
{{- define "ooto.env" -}}
{{- $user := dict -}}
{{- range .Values.extraEnv -}}
{{- $entry := deepCopy . -}}
{{- if hasKey $entry "value" -}}
{{- $_ := set $entry "value" (toString $entry.value) -}}
{{- else if not (hasKey $entry "valueFrom") -}}
{{- $_ := set $entry "value" "" -}}
{{- end -}}
{{- $_ := set $user .name $entry -}}
{{- end -}}
{{- $env := list -}}
{{- $chartNames := dict -}}
{{- range (include "ooto.chartEnv" . | fromYamlArray) -}}
{{- $_ := set $chartNames .name true -}}
{{- $env = append $env (get $user .name | default .) -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if not (hasKey $chartNames .name) -}}
{{- $env = append $env (get $user .name) -}}
{{- $_ := set $chartNames .name true -}}
{{- end -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{- define "ooto.chartEnv" -}}
- name: OOTO_OPERATOR_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OOTO_WATCH_NAMESPACE
  value: {{ .Values.watchNamespace | quote }}
- name: OOTO_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
- name: OOTO_LEADER_ELECTION
  value: {{ .Values.leaderElection.enabled | quote }}
- name: OOTO_LEASE_NAME
  value: {{ include "ooto.leaseName" . | quote }}
- name: OOTO_LEASE_DURATION_SECONDS
  value: {{ .Values.leaderElection.leaseDurationSeconds | quote }}
- name: OOTO_RENEW_DEADLINE_SECONDS
  value: {{ .Values.leaderElection.renewDeadlineSeconds | quote }}
- name: OOTO_RETRY_PERIOD_SECONDS
  value: {{ .Values.leaderElection.retryPeriodSeconds | quote }}
- name: OOTO_BUILD_BACKEND
  value: {{ .Values.buildBackend | quote }}
- name: OOTO_BUILDAH_IMAGE
  value: {{ include "ooto.imageRef" (dict "image" .Values.buildahImage "root" . "defaultTag" "latest") | quote }}
- name: OOTO_SIGNER_IMAGE
  value: {{ include "ooto.imageRef" (dict "image" .Values.signerImage "root" . "defaultTag" "latest") | default (include "ooto.image" .) | quote }}
- name: OOTO_SIGN_SECRETS_RECHECK_SECONDS
  value: {{ .Values.signSecretsRecheckSeconds | quote }}
- name: OOTO_KANIKO_IMAGE
  value: {{ include "ooto.imageRef" (dict "image" .Values.kanikoImage "root" . "defaultTag" "latest") | quote }}
- name: OOTO_BUILD_DEADLINE_SECONDS
  value: {{ .Values.buildDeadlineSeconds | quote }}
- name: OOTO_ALLOW_PRIVILEGED_MODULE_LOADER
  value: {{ .Values.allowPrivilegedModuleLoader | quote }}
- name: OOTO_FIRMWARE_HOST_DIR
  value: {{ .Values.firmwareHostDir | quote }}
- name: OOTO_ALLOW_HOST_PATH_VOLUMES
  value: {{ .Values.allowHostPathVolumes | quote }}
- name: OOTO_ALLOWED_SERVICE_ACCOUNTS
  value: {{ join "," .Values.allowedServiceAccounts | quote }}
- name: OOTO_WEBHOOK_PORT
  value: {{ ternary .Values.webhook.port 0 .Values.webhook.enabled | quote }}
{{- if .Values.webhook.enabled }}
- name: OOTO_WEBHOOK_CERT_DIR
  value: {{ include "ooto.webhookCertDir" . | quote }}
{{- end }}
- name: OOTO_API_CONCURRENCY
  value: {{ .Values.apiConcurrency | quote }}
- name: OOTO_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
- name: OOTO_LOG_LEVEL
  value: {{ .Values.logging.level | quote }}
{{- end -}}
