/**
 * OpenTelemetry tracing for one app: a tracer provider of its own (never the global one, so
 * several gateways can share a process), spans batched and sent over OTLP/HTTP (JSON), W3C trace
 * context read from clients and written to upstreams. Spans are parented explicitly (no context
 * manager): the request's span travels with the request.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type SpanContext, type TextMapGetter, type TextMapSetter, type Tracer } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, type SpanExporter } from '@opentelemetry/sdk-trace-base'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import type { IncomingHttpHeaders } from 'node:http'
import type { GatewayConfig } from '../config/types.js'


export type TracingConfig = NonNullable<GatewayConfig['tracing']>

const getter: TextMapGetter<IncomingHttpHeaders> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key]
}
const setter: TextMapSetter<Record<string, string | string[]>> = {
  set: (carrier, key, value) => { carrier[key] = value }
}

export { SpanKind, SpanStatusCode, type Span, type SpanContext }

export class GatewayTracing {
  private readonly provider: BasicTracerProvider
  readonly tracer: Tracer
  private readonly propagator = new W3CTraceContextPropagator()

  /** @param exporter where spans go (default: OTLP/HTTP to `config.tracesUrl`). */
  constructor (readonly config: TracingConfig, exporter?: SpanExporter) {
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': config.serviceName }),
      // A sampled traceparent from the client is followed; new traces are sampled at sampleRatio.
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
      spanProcessors: [new BatchSpanProcessor(exporter ?? new OTLPTraceExporter({ url: config.tracesUrl }), { scheduledDelayMillis: 1000 })]
    })
    this.tracer = this.provider.getTracer('tollgate')
  }

  /** The trace context a client sent (`traceparent`, `tracestate`), or the root context. */
  extract (headers: IncomingHttpHeaders): Context {
    return this.propagator.extract(ROOT_CONTEXT, headers, getter)
  }

  /** Starts a span under `parent` (a span, or a context from `extract`). */
  start (name: string, kind: SpanKind, parent: Span | Context, attributes?: Record<string, string | number | boolean>): Span {
    const ctx = isSpan(parent) ? trace.setSpan(ROOT_CONTEXT, parent) : parent
    return this.tracer.startSpan(name, { kind, attributes }, ctx)
  }

  /** Starts a span whose parent is a span that has ended (`parent`: its context). */
  startUnder (name: string, kind: SpanKind, parent: SpanContext, attributes?: Record<string, string | number | boolean>): Span {
    return this.tracer.startSpan(name, { kind, attributes }, trace.setSpanContext(ROOT_CONTEXT, parent))
  }

  /**
   * Writes `span`'s context into `headers` (`traceparent`, and `tracestate` when there is one),
   * replacing any the client sent: the upstream's parent is the gateway's span.
   */
  inject (span: Span, headers: Record<string, string | string[]>): void {
    delete headers.traceparent
    delete headers.tracestate
    this.propagator.inject(trace.setSpan(ROOT_CONTEXT, span), headers, setter)
  }

  /** Sends what is batched now. */
  async flush (): Promise<void> { await this.provider.forceFlush() }

  /** Sends what is batched and stops. */
  async shutdown (): Promise<void> { await this.provider.shutdown() }
}

function isSpan (x: Span | Context): x is Span {
  return typeof (x as Span).spanContext === 'function'
}

/** Ends `span` with the HTTP status it answered (5xx marks it an error, as the semantic conventions ask of servers). */
export function endWithStatus (span: Span, status: number, server: boolean): void {
  span.setAttribute('http.response.status_code', status)
  if (status >= 500 || (!server && status >= 400)) span.setStatus({ code: SpanStatusCode.ERROR })
  span.end()
}
