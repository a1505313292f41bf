# The OpenTelemetry Collector (core distribution) on busybox: the upstream image has no shell
# or HTTP client, so a compose healthcheck could not ask its health_check extension anything.
FROM otel/opentelemetry-collector:0.114.0 AS otelcol
FROM busybox:1.37
COPY --from=otelcol /otelcol /otelcol
USER 10001
EXPOSE 4317 4318 8888 13133
ENTRYPOINT ["/otelcol"]
CMD ["--config=/etc/otelcol/config.yaml"]
