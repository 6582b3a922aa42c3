{{/* Names: DNS labels of at most 63 characters. */}}
{{- define "rcds.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rcds.fullname" -}}
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

{{/* A component's resource name: <fullname>-<component>, the fullname cut so the whole fits. */}}
{{- define "rcds.componentName" -}}
{{- $root := index . 0 }}{{ $component := index . 1 }}
{{- printf "%s-%s" (include "rcds.fullname" $root | trunc (int (sub 62 (len $component))) | trimSuffix "-") $component }}
{{- end }}

{{- define "rcds.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "rcds.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: radiomics-cds
{{- end }}

{{/* Selector labels of one component (ingest or scorer): [root, component]. */}}
{{- define "rcds.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "rcds.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "rcds.componentLabels" -}}
{{ include "rcds.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "rcds.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rcds.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository:tag@digest: pinned by tag always, by content when a digest is given. */}}
{{- define "rcds.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- $repository := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $repository = printf "%s/%s" . $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" $repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}
{{- end }}

{{/* Where a role's pods run (its values: ingest or scorer): priority, spreading, placement. */}}
{{- define "rcds.podPlacement" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "rcds.scorerHeadless" -}}
{{- include "rcds.componentName" (list . "scorer-headless") }}
{{- end }}

{{/* The gRPC target the ingest uses: every scorer pod through DNS, round robin in the client. */}}
{{- define "rcds.scorerTarget" -}}
{{- printf "dns:///%s.%s.svc.%s:50051" (include "rcds.scorerHeadless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{- define "rcds.credentialsSecret" -}}
{{- include "rcds.componentName" (list . "credentials") }}
{{- end }}

{{- define "rcds.dicomTlsSecret" -}}
{{- default (include "rcds.componentName" (list . "dicom-tls")) .Values.dicom.tls.existingSecret }}
{{- end }}

{{- define "rcds.smartKeySecret" -}}
{{- default (include "rcds.credentialsSecret" .) .Values.fhir.smart.existingSecret }}
{{- end }}

{{/* Which FHIR credentials are in use, and whether the chart makes the Secret holding them. */}}
{{- define "rcds.fhirToken" -}}
{{- if or .Values.fhir.bearerToken.existingSecret .Values.fhir.bearerToken.value }}true{{ end }}
{{- end }}

{{- define "rcds.smartKey" -}}
{{- if or .Values.fhir.smart.existingSecret .Values.fhir.smart.privateKey }}true{{ end }}
{{- end }}

{{/* Credentials and CA certificates the ingest reads from files (the RCDS_*_FILE settings),
     each from a Secret the site names (existingSecret, holding `key`) or, for a credential, one
     the chart makes from `value` (the credentials Secret): a JSON list of those in use, each
     with its volume (mounted at rcds.secretsDir/<volume>), its environment variable, where it
     is in the values, and the config URL it needs (without it, it would do nothing). */}}
{{- define "rcds.credentialFiles" -}}
{{- $v := .Values -}}
{{- $all := list
  (dict "volume" "fhir-token" "credential" true "env" "RCDS_FHIR_BEARER_TOKEN_FILE" "values" "fhir.bearerToken" "needs" "fhir_base_url" "from" $v.fhir.bearerToken)
  (dict "volume" "fhir-ca" "credential" false "env" "RCDS_FHIR_TLS_CA_FILE" "values" "fhir.tls" "needs" "fhir_base_url" "from" $v.fhir.tls)
  (dict "volume" "stow-token" "credential" true "env" "RCDS_STOW_BEARER_TOKEN_FILE" "values" "stow.bearerToken" "needs" "stow_url" "from" $v.stow.bearerToken)
  (dict "volume" "stow-basic-auth" "credential" true "env" "RCDS_STOW_BASIC_AUTH_FILE" "values" "stow.basicAuth" "needs" "stow_url" "from" $v.stow.basicAuth)
  (dict "volume" "stow-ca" "credential" false "env" "RCDS_STOW_TLS_CA_FILE" "values" "stow.tls" "needs" "stow_url" "from" $v.stow.tls)
  (dict "volume" "prior-dicomweb-token" "credential" true "env" "RCDS_PRIOR_DICOMWEB_BEARER_TOKEN_FILE" "values" "priors.dicomweb.bearerToken" "needs" "prior_dicomweb_url" "from" $v.priors.dicomweb.bearerToken)
  (dict "volume" "prior-dicomweb-basic-auth" "credential" true "env" "RCDS_PRIOR_DICOMWEB_BASIC_AUTH_FILE" "values" "priors.dicomweb.basicAuth" "needs" "prior_dicomweb_url" "from" $v.priors.dicomweb.basicAuth)
  (dict "volume" "prior-dicomweb-ca" "credential" false "env" "RCDS_PRIOR_DICOMWEB_TLS_CA_FILE" "values" "priors.dicomweb.tls" "needs" "prior_dicomweb_url" "from" $v.priors.dicomweb.tls)
-}}
{{- $used := list -}}
{{- range $all }}{{ if or .from.existingSecret .from.value }}{{ $used = append $used . }}{{ end }}{{ end -}}
{{- toJson $used -}}
{{- end }}

{{- define "rcds.makeCredentialsSecret" -}}
{{- $valued := list }}
{{- range include "rcds.credentialFiles" . | fromJsonArray }}{{ if .from.value }}{{ $valued = append $valued . }}{{ end }}{{ end }}
{{- if or .Values.fhir.smart.privateKey $valued }}true{{ end }}
{{- end }}

{{/* Where secrets are mounted; the RCDS_*_FILE variables point inside. */}}
{{- define "rcds.secretsDir" -}}/var/run/secrets/radiomics-cds{{- end }}
{{- define "rcds.dicomTlsDir" -}}/var/run/secrets/radiomics-cds/dicom-tls{{- end }}
{{- define "rcds.smartDir" -}}/var/run/secrets/radiomics-cds/fhir-smart{{- end }}
{{- define "rcds.pacsTlsDir" -}}/var/run/secrets/radiomics-cds/pacs-tls{{- end }}
{{- /* Scorer pod: its certificate and key, the CA of client certificates. Ingest pod: the CA
     that issued the scorer's certificate, its own client certificate and key. */}}
{{- define "rcds.scorerTlsDir" -}}/var/run/secrets/radiomics-cds/scorer-tls{{- end }}
{{- define "rcds.scorerClientCaDir" -}}/var/run/secrets/radiomics-cds/scorer-client-ca{{- end }}
{{- define "rcds.scorerCaDir" -}}/var/run/secrets/radiomics-cds/scorer-ca{{- end }}
{{- define "rcds.scorerClientTlsDir" -}}/var/run/secrets/radiomics-cds/scorer-client-tls{{- end }}

{{/* scorerTls values that make sense together. */}}
{{- define "rcds.checkScorerTls" -}}
{{- $s := .Values.scorerTls }}
{{- if and $s.enabled (not $s.serverSecret) }}
{{- fail "scorerTls.enabled: set scorerTls.serverSecret (the scorer's certificate, key and ca.crt)" }}
{{- end }}
{{- if and (or $s.serverSecret $s.clientSecret $s.serverName) (not $s.enabled) }}
{{- fail "scorerTls.serverSecret, clientSecret or serverName is set but scorerTls.enabled is not true" }}
{{- end }}
{{- end }}

{{/* The calling-AE allowlist: required, unless opted out of explicitly. */}}
{{- define "rcds.checkCallingAEs" -}}
{{- $allowed := .Values.config.dicom_allowed_calling_aes }}
{{- if and (not $allowed) (not .Values.dicom.allowAnyCallingAE) }}
{{- fail "config.dicom_allowed_calling_aes is empty: any host that reaches the DICOM port could have results written for any patient; list the PACS/modality AE titles, or set dicom.allowAnyCallingAE=true to accept that risk explicitly" }}
{{- end }}
{{- if and $allowed .Values.dicom.allowAnyCallingAE }}
{{- fail "dicom.allowAnyCallingAE is true but config.dicom_allowed_calling_aes lists AE titles: set one or the other" }}
{{- end }}
{{- end }}

{{/* The container securityContext both roles share. */}}
{{- define "rcds.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "rcds.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* checkov skips, each with its reason (no "=" in a reason: checkov splits on it). An image
     without a digest is pinned by tag only, which CKV_K8S_43 and CKV_K8S_15 flag. */}}
{{- define "rcds.imageCheckSkips" -}}
{{- if not .Values.image.digest }}
checkov.io/skip-image-digest: CKV_K8S_43=the image is pinned by tag; set image.digest to pin it by content
{{- if ne .Values.image.pullPolicy "Always" }}
checkov.io/skip-pull-policy: CKV_K8S_15=a pinned tag is pulled IfNotPresent; set image.digest or image.pullPolicy Always
{{- end }}
{{- end }}
{{- end }}

{{/* Pod-spec settings both roles share. */}}
{{- define "rcds.podCommon" -}}
serviceAccountName: {{ include "rcds.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- include "rcds.podSecurityContext" . | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "rcds.configChecksum" -}}
{{- include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}

{{/* The chart-made Secrets' checksum: a new value restarts the pods. The service follows its
     bearer token and Basic credential files (kubelet updates them a minute or two after the
     Secret), but reads the SMART private key once at start (a Secret of the site's holding it
     needs `kubectl rollout restart`); the restart applies either at once. */}}
{{- define "rcds.credentialsChecksum" -}}
{{- include (print .Template.BasePath "/secrets.yaml") . | sha256sum }}
{{- end }}

{{/* Settings only the ingest uses, left out of the scorer's config.yaml: delivery to the PACS
     (C-STORE, STOW-RS) and the EHR, the prior lookups (a scorer started with prior_providers
     naming dimse and only pacs_host to default to would refuse to start), and the retention of
     the spool, which only the ingest has. */}}
{{- define "rcds.ingestOnlySettings" -}}
pacs_host pacs_port pacs_ae_title pacs_tls stow_url fhir_base_url fhir_smart_client_id fhir_smart_key_id fhir_smart_token_url fhir_smart_scope patient_identifier_system fhir_result_status delivery_max_attempts delivery_initial_backoff_seconds prior_providers prior_lookback_days prior_max_studies prior_timeout_seconds prior_in_flight_wait_seconds prior_retry_hours pacs_query_initial_backoff_seconds prior_dicomweb_url prior_dimse_host prior_dimse_port prior_dimse_ae_title prior_directory spool_retention_days
{{- end }}

{{/* A NetworkPolicy egress rule: [CIDRs, TCP ports]. */}}
{{- define "rcds.egressRule" -}}
- ports:
    {{- range index . 1 }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
  to:
    {{- range index . 0 }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
{{- end }}

{{/* A config.yaml: [root, settings]. Ordered ROI-name rules and the files the chart mounts are
     added to the settings given. */}}
{{- define "rcds.configYaml" -}}
{{- $root := index . 0 }}
{{- with index . 1 }}
{{ toYaml . }}
{{- end }}
{{- with $root.Values.locationNameRules }}
location_name_rules:
  {{- range . }}
  {{ .pattern | toJson }}: {{ .class | toJson }}
  {{- end }}
{{- end }}
{{- if $root.Values.signature }}
signature_file: /etc/radiomics-cds/signature.json
{{- end }}
{{- if $root.Values.extractionSettings }}
extraction_settings_file: /etc/radiomics-cds/extraction-settings.yaml
{{- end }}
{{- end }}
