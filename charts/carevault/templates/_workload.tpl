{{/*
Shared resource templates, called per service from templates/<service>/*.yaml with
(dict "root" $ "svc" "<service>"). One resource per file in templates/<service>/.
*/}}

{{- define "carevault.configmap" -}}
{{- $root := .root -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "carevault.svcName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
data:
  {{- include "carevault.env" . | nindent 2 }}
{{- end }}

{{- define "carevault.serviceaccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "carevault.svcName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
# no service talks to the Kubernetes API
automountServiceAccountToken: false
{{- end }}

{{- define "carevault.deployment" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $v := get $root.Values $svc -}}
{{- $fact := include "carevault.fact" . | fromYaml -}}
{{- $name := include "carevault.svcName" . -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
spec:
  {{- if not $root.Values.autoscaling.enabled }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  progressDeadlineSeconds: 600
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # never go below the desired count during a rollout
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "carevault.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "carevault.labels" . | nindent 8 }}
      annotations:
        # a change of configuration rolls the pods
        checksum/config: {{ include "carevault.configmap" . | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $root.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- include "carevault.podSecurityContext" . | nindent 8 }}
      # preStop pause + the server's own graceful shutdown + a margin
      terminationGracePeriodSeconds: {{ include "carevault.terminationGracePeriodSeconds" $root }}
      topologySpreadConstraints:
        {{- range $key := list "zone" "node" }}
        {{- $c := get $root.Values.global.topologySpread $key }}
        - maxSkew: 1
          topologyKey: {{ $c.topologyKey }}
          whenUnsatisfiable: {{ $c.whenUnsatisfiable }}
          labelSelector:
            matchLabels:
              {{- include "carevault.selectorLabels" $ | nindent 14 }}
          matchLabelKeys: [pod-template-hash]
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $svc }}
          image: {{ include "carevault.image" . | quote }}
          imagePullPolicy: {{ $root.Values.global.imagePullPolicy }}
          args: [serve]
          envFrom:
            - configMapRef:
                name: {{ $name }}
          ports:
            - name: https
              containerPort: 8443
              protocol: TCP
            - name: management
              containerPort: 9090
              protocol: TCP
          # plain-HTTP management port: the kubelet cannot present a client certificate
          startupProbe:
            httpGet:
              path: /healthz
              port: management
            periodSeconds: 2
            timeoutSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: /healthz
              port: management
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: management
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $root.Values.global.preStopSleepSeconds }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "carevault.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: tls
              mountPath: /var/run/carevault/tls
              readOnly: true
            {{- if $fact.ownsDatabase }}
            - name: database
              mountPath: /var/run/carevault/database
              readOnly: true
            {{- end }}
            {{- if and (has $svc (list "gateway" "api")) $v.redis.enabled }}
            - name: redis
              mountPath: /var/run/carevault/redis
              readOnly: true
            {{- end }}
            {{- if and (eq $svc "api") $v.audit.existingSecret }}
            - name: audit-keys
              mountPath: /var/run/carevault/audit
              readOnly: true
            {{- end }}
            {{- if and (eq $svc "api") $v.secretsKey.existingSecret }}
            - name: secrets-key
              mountPath: /var/run/carevault/secrets-key
              readOnly: true
            {{- end }}
            {{- if eq $svc "keyservice" }}
            - name: doctor-keys
              mountPath: /var/run/carevault/doctor-keys
              readOnly: true
            {{- end }}
            {{- if eq $svc "fileservice" }}
            {{- if eq $v.storage.type "s3" }}
            - name: s3
              mountPath: /var/run/carevault/s3
              readOnly: true
            {{- else }}
            - name: blobs
              mountPath: /var/lib/carevault/blobs
            {{- end }}
            {{- end }}
      volumes:
        # the only writable path besides declared data volumes
        - name: tmp
          emptyDir:
            medium: Memory
            sizeLimit: 64Mi
        - name: tls
          secret:
            secretName: {{ include "carevault.tlsSecretName" . }}
            defaultMode: 0440
            items:
              - {key: tls.crt, path: tls.crt}
              - {key: tls.key, path: tls.key}
              - {key: ca.crt, path: ca.crt}
        {{- if $fact.ownsDatabase }}
        - name: database
          secret:
            secretName: {{ include "carevault.databaseSecretName" . }}
            defaultMode: 0440
            items:
              - key: {{ include "carevault.databaseSecretKey" . }}
                path: url
        {{- end }}
        {{- if and (has $svc (list "gateway" "api")) $v.redis.enabled }}
        - name: redis
          secret:
            secretName: {{ $v.redis.existingSecret }}
            defaultMode: 0440
            items:
              - key: {{ $v.redis.key }}
                path: url
        {{- end }}
        {{- if and (eq $svc "api") $v.audit.existingSecret }}
        - name: audit-keys
          secret:
            secretName: {{ $v.audit.existingSecret }}
            defaultMode: 0440
            items:
              - {key: checkpoint.key, path: checkpoint.key}
              - {key: pseudonym.key, path: pseudonym.key}
        {{- end }}
        {{- if and (eq $svc "api") $v.secretsKey.existingSecret }}
        - name: secrets-key
          secret:
            secretName: {{ $v.secretsKey.existingSecret }}
            defaultMode: 0440
            items:
              - key: {{ $v.secretsKey.key }}
                path: key
              {{- if $v.secretsKey.previousKey }}
              - key: {{ $v.secretsKey.previousKey }}
                path: previous
              {{- end }}
        {{- end }}
        {{- if eq $svc "keyservice" }}
        - name: doctor-keys
          {{- if $v.doctorKeys.existingSecret }}
          secret:
            secretName: {{ $v.doctorKeys.existingSecret }}
            defaultMode: 0440
          {{- else }}
          configMap:
            name: {{ default (printf "%s-doctor-keys" (include "carevault.fullname" $root)) $v.doctorKeys.existingConfigMap }}
            defaultMode: 0440
          {{- end }}
        {{- end }}
        {{- if eq $svc "fileservice" }}
        {{- if eq $v.storage.type "s3" }}
        - name: s3
          secret:
            secretName: {{ $v.storage.s3.existingSecret }}
            defaultMode: 0440
            items:
              - key: {{ $v.storage.s3.accessKeyIdKey }}
                path: access-key-id
              - key: {{ $v.storage.s3.secretAccessKeyKey }}
                path: secret-access-key
        {{- else }}
        - name: blobs
          persistentVolumeClaim:
            claimName: {{ default (printf "%s-blobs" $name) $v.storage.pvc.existingClaim }}
        {{- end }}
        {{- end }}
{{- end }}

{{- define "carevault.service" -}}
{{- $v := get .root.Values .svc -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "carevault.svcName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
  {{- if and (eq .svc "gateway") $v.service.annotations }}
  annotations:
    {{- toYaml $v.service.annotations | nindent 4 }}
  {{- end }}
spec:
  {{- if eq .svc "gateway" }}
  type: {{ $v.service.type }}
  {{- if and (eq $v.service.type "LoadBalancer") .root.Values.networkPolicy.gatewayIngressCidrs }}
  loadBalancerSourceRanges:
    {{- toYaml .root.Values.networkPolicy.gatewayIngressCidrs | nindent 4 }}
  {{- end }}
  {{- else }}
  type: ClusterIP
  {{- end }}
  selector:
    {{- include "carevault.selectorLabels" . | nindent 4 }}
  ports:
    - name: https
      port: {{ if eq .svc "gateway" }}{{ $v.service.port }}{{ else }}8443{{ end }}
      targetPort: https
      protocol: TCP
    {{- if eq .svc "gateway" }}
    {{- if ne (int $v.service.port) 8443 }}
    # in-cluster callers (the helm test) may use the container port too
    - name: https-internal
      port: 8443
      targetPort: https
      protocol: TCP
    {{- end }}
    {{- end }}
{{- end }}

{{/* A separate ClusterIP Service for the management port, so that the public
gateway Service never exposes /metrics. */}}
{{- define "carevault.metricsService" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "carevault.svcName" . }}-metrics
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
    carevault.io/metrics: "true"
spec:
  type: ClusterIP
  selector:
    {{- include "carevault.selectorLabels" . | nindent 4 }}
  ports:
    - name: management
      port: 9090
      targetPort: management
      protocol: TCP
{{- end }}

{{- define "carevault.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "carevault.svcName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
spec:
  # at three replicas a node drain always makes progress
  maxUnavailable: 1
  # a crash-looping pod never blocks a drain
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "carevault.selectorLabels" . | nindent 6 }}
{{- end }}

{{- define "carevault.hpa" -}}
{{- $v := get .root.Values .svc -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "carevault.svcName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "carevault.svcName" . }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetMemoryUtilizationPercentage }}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies:
        - type: Pods
          value: 3
          periodSeconds: 60
    scaleDown:
      stabilizationWindowSeconds: 300
      policies:
        - type: Pods
          value: 1
          periodSeconds: 120
{{- end }}

{{- define "carevault.certificate" -}}
{{- $root := .root -}}
{{- $v := get $root.Values .svc -}}
{{- $name := include "carevault.svcName" . -}}
{{- $cm := $root.Values.certManager -}}
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
spec:
  secretName: {{ include "carevault.tlsSecretName" . }}
  secretTemplate:
    labels:
      {{- include "carevault.selectorLabels" . | nindent 6 }}
  duration: {{ $cm.duration }}
  renewBefore: {{ $cm.renewBefore }}
  commonName: {{ .svc }}
  # the service identity checked by the mTLS allow-lists
  uris:
    - spiffe://carevault/{{ .svc }}
  dnsNames:
    - {{ $name }}
    - {{ $name }}.{{ $root.Release.Namespace }}.svc
    - {{ $name }}.{{ $root.Release.Namespace }}.svc.cluster.local
    {{- if eq .svc "gateway" }}
    {{- range $v.publicHostnames }}
    - {{ . }}
    {{- end }}
    {{- end }}
  usages:
    - digital signature
    - key encipherment
    - server auth
    - client auth
  privateKey:
    algorithm: {{ $cm.privateKey.algorithm }}
    size: {{ $cm.privateKey.size }}
    rotationPolicy: Always
  issuerRef:
    {{- include "carevault.issuerRef" $root | nindent 4 }}
{{- end }}

{{- define "carevault.issuerRef" -}}
{{- if .Values.certManager.issuer.create -}}
name: {{ include "carevault.fullname" . }}-ca
kind: Issuer
group: cert-manager.io
{{- else -}}
name: {{ .Values.certManager.issuer.existing.name }}
kind: {{ .Values.certManager.issuer.existing.kind }}
group: {{ .Values.certManager.issuer.existing.group }}
{{- end -}}
{{- end }}

{{- define "carevault.servicemonitor" -}}
{{- $root := .root -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "carevault.svcName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
    {{- with $root.Values.monitoring.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "carevault.selectorLabels" . | nindent 6 }}
      carevault.io/metrics: "true"
  namespaceSelector:
    matchNames: [{{ $root.Release.Namespace }}]
  endpoints:
    - port: management
      path: /metrics
      scheme: http
      interval: {{ $root.Values.monitoring.serviceMonitor.interval }}
      honorLabels: false
{{- end }}

{{/*
NetworkPolicy of a service: ingress from its callers on 8443 (the gateway: from
anywhere) and from Prometheus on 9090; egress to its callees on 8443, its own
database, DNS (not keyservice: it resolves nothing) and the few infrastructure
peers it needs.
*/}}
{{- define "carevault.networkpolicy" -}}
{{- $root := .root -}}
{{- $svc := .svc -}}
{{- $v := get $root.Values $svc -}}
{{- $fact := include "carevault.fact" . | fromYaml -}}
{{- $callers := include "carevault.callers" . -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "carevault.svcName" . }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "carevault.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "carevault.selectorLabels" . | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- if eq $svc "gateway" }}
    # the internet
    - ports:
        - protocol: TCP
          port: 8443
      {{- with $root.Values.networkPolicy.gatewayIngressCidrs }}
      from:
        {{- range . }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      {{- end }}
    {{- end }}
    {{- if and (eq $svc "gateway") $root.Values.helmTest.enabled $root.Values.networkPolicy.gatewayIngressCidrs }}
    # `helm test` (when the internet rule above is restricted to CIDRs)
    - from:
        - podSelector:
            matchLabels:
              {{- include "carevault.selectorLabels" (dict "root" $root "svc" "helm-test") | nindent 14 }}
      ports:
        - protocol: TCP
          port: 8443
    {{- end }}
    {{- if $callers }}
    - from:
        {{- range $caller := splitList " " $callers }}
        - podSelector:
            matchLabels:
              {{- include "carevault.selectorLabels" (dict "root" $root "svc" $caller) | nindent 14 }}
        {{- end }}
      ports:
        - protocol: TCP
          port: 8443
    {{- end }}
    - from:
        {{- include "carevault.peer" $root.Values.networkPolicy.prometheus | nindent 8 }}
      ports:
        - protocol: TCP
          port: 9090
  egress:
    {{- if ne $svc "keyservice" }}
    {{- include "carevault.dnsEgress" $root | nindent 4 }}
    {{- end }}
    {{- if $fact.calls }}
    - to:
        {{- range $callee := $fact.calls }}
        - podSelector:
            matchLabels:
              {{- include "carevault.selectorLabels" (dict "root" $root "svc" $callee) | nindent 14 }}
        {{- end }}
      ports:
        - protocol: TCP
          port: 8443
    {{- end }}
    {{- if $fact.ownsDatabase }}
    {{- include "carevault.databaseEgress" . | nindent 4 }}
    {{- end }}
    {{- if and (has $svc (list "gateway" "api")) $v.redis.enabled }}
    - to:
        {{- include "carevault.peer" (dict "namespaceLabels" $v.redis.namespaceLabels "podLabels" $v.redis.podLabels) | nindent 8 }}
      ports:
        - protocol: TCP
          port: {{ $v.redis.port }}
    {{- end }}
    {{- if and (eq $svc "fileservice") (eq $v.storage.type "s3") }}
    - to:
        {{- range $v.storage.s3.egressCidrs }}
        - ipBlock:
            cidr: {{ . }}
        {{- end }}
      ports:
        - protocol: TCP
          port: {{ $v.storage.s3.port }}
    {{- end }}
    {{- if include "carevault.exportsTelemetry" . }}
    - to:
        {{- include "carevault.peer" $root.Values.observability.egress | nindent 8 }}
      ports:
        {{- range $root.Values.observability.egress.ports }}
        - protocol: TCP
          port: {{ . }}
        {{- end }}
    {{- end }}
{{- end }}

{{/* Egress from a service (or its migration Job) to its own database only. */}}
{{- define "carevault.databaseEgress" -}}
{{- if .root.Values.database.cnpg.enabled -}}
- to:
    - podSelector:
        matchLabels:
          cnpg.io/cluster: {{ include "carevault.dbClusterName" . }}
  ports:
    - protocol: TCP
      port: 5432
{{- else -}}
- to:
    {{- range .root.Values.database.external.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - protocol: TCP
      port: {{ .root.Values.database.external.port }}
{{- end -}}
{{- end }}
