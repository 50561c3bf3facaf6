{{/*
The SPIRAL alert rule groups, thresholds from .Values.alerts. Rendered into the PrometheusRule and,
with default values, into files/alerts/spiral-rules.yaml (python tests/chart/regenerate.py) so plain
Prometheus users and `promtool check rules` get the same rules.

Labels: `spiral_job` is the SpiralJob name (exported by the services and set from the pod label by
the PodMonitor); `namespace` and `role` are target labels.
*/}}
{{- define "spiral.alerts.labels" -}}
severity: {{ .severity }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "spiral.alerts.groups" -}}
{{- $a := .Values.alerts }}
{{- $extra := .Values.prometheusRule.additionalAlertLabels }}
{{- if or $a.throughputCollapse.enabled $a.policyLag.enabled $a.replayStalled.enabled $a.learnerRestarts.enabled $a.metricsAbsent.enabled }}
- name: spiral.jobs
  rules:
  {{- with $a.throughputCollapse }}
  {{- if .enabled }}
    - alert: SpiralThroughputCollapse
      # Relative to the job's own earlier rate: a job that was slow from the start is not an outage.
      expr: |-
        sum by (namespace, spiral_job) (rate(spiral_learner_frames_total[{{ .window }}]))
          < {{ .ratio }} * sum by (namespace, spiral_job) (rate(spiral_learner_frames_total[{{ .window }}] offset {{ .baselineOffset }}))
      for: {{ .for }}
      labels:
        {{- include "spiral.alerts.labels" (dict "severity" .severity "extra" $extra) | nindent 8 }}
      annotations:
        summary: {{ `SpiralJob {{ $labels.namespace }}/{{ $labels.spiral_job }}: learner throughput collapsed` | quote }}
        description: {{ printf "The policy learner consumes {{ $value | humanize }} frames/s, below %v of its rate %s ago. Check actor pods, the replay rate limiter and learner restarts." (toString .ratio) .baselineOffset | quote }}
  {{- end }}
  {{- end }}
  {{- with $a.policyLag }}
  {{- if .enabled }}
    - alert: SpiralPolicyLagHigh
      expr: |-
        sum by (namespace, spiral_job) (rate(spiral_learner_policy_lag_versions_sum[{{ .window }}]))
          / sum by (namespace, spiral_job) (rate(spiral_learner_policy_lag_versions_count[{{ .window }}]))
          > {{ .maxVersions }}
      for: {{ .for }}
      labels:
        {{- include "spiral.alerts.labels" (dict "severity" .severity "extra" $extra) | nindent 8 }}
      annotations:
        summary: {{ `SpiralJob {{ $labels.namespace }}/{{ $labels.spiral_job }}: policy lag is high` | quote }}
        description: {{ printf "Trajectories reach the learner {{ $value | humanize }} policy versions behind on average (threshold %v). Actors fetch weights too rarely or the learner queue is backed up." (toString .maxVersions) | quote }}
  {{- end }}
  {{- end }}
  {{- with $a.replayStalled }}
  {{- if .enabled }}
    - alert: SpiralReplayRateLimiterStalled
      # Blocked most of the time *and* nothing sampled: the limiter is holding learning still.
      expr: |-
        (sum by (namespace, spiral_job, table) (rate(spiral_replay_rate_limited_seconds_total[{{ .window }}])) > {{ .blockedSecondsPerSecond }})
          and on (namespace, spiral_job, table)
        (sum by (namespace, spiral_job, table) (rate(spiral_replay_samples_total[{{ .window }}])) == 0)
      for: {{ .for }}
      labels:
        {{- include "spiral.alerts.labels" (dict "severity" .severity "extra" $extra) | nindent 8 }}
      annotations:
        summary: {{ `SpiralJob {{ $labels.namespace }}/{{ $labels.spiral_job }}: replay table {{ $labels.table }} is stalled by its rate limiter` | quote }}
        description: "Callers spend {{`{{ $value | humanize }}`}} s/s blocked and no item was sampled. Inserts are missing (actors down) or samples_per_insert cannot be met."
  {{- end }}
  {{- end }}
  {{- with $a.learnerRestarts }}
  {{- if .enabled }}
    - alert: SpiralLearnerRestarting
      expr: |-
        sum by (namespace, spiral_job, role) (increase(spiral_learner_restarts_total[{{ .window }}])) > {{ .maxRestarts }}
      for: {{ .for }}
      labels:
        {{- include "spiral.alerts.labels" (dict "severity" .severity "extra" $extra) | nindent 8 }}
      annotations:
        summary: {{ `SpiralJob {{ $labels.namespace }}/{{ $labels.spiral_job }}: {{ $labels.role }} keeps restarting` | quote }}
        description: {{ printf "The {{ $labels.role }} resumed from a checkpoint {{ $value | humanize }} times in %s (tolerated: %v). Look at the pod's previous logs and OOM kills." .window (toString .maxRestarts) | quote }}
  {{- end }}
  {{- end }}
  {{- with $a.metricsAbsent }}
  {{- if .enabled }}
    - alert: SpiralJobMetricsAbsent
      # `up` is written by Prometheus for every target; the PodMonitor gives SpiralJob targets a spiral_job label.
      expr: |-
        up{spiral_job!=""} == 0
      for: {{ .for }}
      labels:
        {{- include "spiral.alerts.labels" (dict "severity" .severity "extra" $extra) | nindent 8 }}
      annotations:
        summary: {{ `SpiralJob {{ $labels.namespace }}/{{ $labels.spiral_job }}: metrics of {{ $labels.role }} pod {{ $labels.pod }} cannot be scraped` | quote }}
        description: "The pod exists but its /metrics endpoint (port 9400) does not answer; the service is crash-looping or hung."
    - alert: SpiralJobLearnerMetricsAbsent
      # Actors report but the policy learner does not: its metrics vanished while the job runs.
      expr: |-
        count by (namespace, spiral_job) (spiral_actor_frames_total)
          unless count by (namespace, spiral_job) (spiral_learner_frames_total)
      for: {{ .for }}
      labels:
        {{- include "spiral.alerts.labels" (dict "severity" .severity "extra" $extra) | nindent 8 }}
      annotations:
        summary: {{ `SpiralJob {{ $labels.namespace }}/{{ $labels.spiral_job }}: policy learner metrics are absent` | quote }}
        description: "Actors export metrics but no policy learner series exists for this job; the learner pod is gone or not scraped."
  {{- end }}
  {{- end }}
{{- end }}
{{- if $a.operatorReconcileErrors.enabled }}
- name: spiral.operator
  rules:
  {{- with $a.operatorReconcileErrors }}
  {{- if .enabled }}
    - alert: SpiralOperatorReconcileErrors
      expr: |-
        sum by (handler, kind) (rate(spiral_operator_reconcile_errors_total{kind=~{{ .kinds | quote }}}[{{ .window }}])) > {{ .maxErrorsPerSecond }}
      for: {{ .for }}
      labels:
        {{- include "spiral.alerts.labels" (dict "severity" .severity "extra" $extra) | nindent 8 }}
      annotations:
        summary: {{ `SPIRAL operator: handler {{ $labels.handler }} fails with {{ $labels.kind }} errors` | quote }}
        description: "{{`{{ $value | humanize }}`}} errors/s. Permanent errors are invalid SpiralJob specs (see the job's Events); unexpected ones are operator bugs (see its logs)."
  {{- end }}
  {{- end }}
{{- end }}
{{- end }}
