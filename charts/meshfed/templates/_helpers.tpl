{{/* Chart name. */}}
{{- define "meshfed.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name (also the ClusterRole/ClusterRoleBinding name). */}}
{{- define "meshfed.fullname" -}}
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

{{- define "meshfed.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "meshfed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "meshfed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meshfed.labels" -}}
helm.sh/chart: {{ include "meshfed.chart" . }}
{{ include "meshfed.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: control-plane
{{- end -}}

{{- define "meshfed.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "meshfed.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The namespace holding remote Secrets, the istio ConfigMap and the gateway. */}}
{{- define "meshfed.systemNamespace" -}}
{{- default .Release.Namespace .Values.systemNamespace -}}
{{- end -}}

{{- define "meshfed.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Debug listen address; loopback is refused because the kubelet probes use the pod IP. */}}
{{- define "meshfed.debugListen" -}}
{{- $l := default (printf "0.0.0.0:%v" .Values.debug.port) .Values.debug.listen -}}
{{- if or (hasPrefix "127." $l) (hasPrefix "localhost:" $l) (hasPrefix "[::1]" $l) -}}
{{- fail (printf "debug.listen %q is a loopback address: the readiness/liveness probes reach /ready and /healthz on the pod IP; leave debug.listen empty (0.0.0.0:%v) and keep debug.exposed=false to keep it off the Service" $l .Values.debug.port) -}}
{{- end -}}
{{- $l -}}
{{- end -}}

{{/* Whether the Service publishes http-debug. */}}
{{- define "meshfed.debugExposed" -}}
{{- if or .Values.debug.exposed .Values.serviceMonitor.enabled -}}true{{- end -}}
{{- end -}}

{{- define "meshfed.debugTokenSecret" -}}
{{- default (printf "%s-debug-token" (include "meshfed.fullname" .)) .Values.debug.tokenSecret -}}
{{- end -}}
