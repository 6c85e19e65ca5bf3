/** JSON schemas of the admin API (also the source of its OpenAPI document). */
import { Type, type Static } from '@sinclair/typebox'

const NullableString = Type.Union([Type.String(), Type.Null()])

export const Connection = Type.Object({
  id: Type.String(),
  route: Type.String(),
  path: Type.String(),
  clientIp: Type.String(),
  userId: NullableString,
  subprotocol: NullableString,
  upstream: Type.String({ description: 'target URL of the upstream socket' }),
  instanceId: Type.String(),
  connectedAt: Type.String({ format: 'date-time' }),
  lastActivityAt: Type.String({ format: 'date-time' }),
  lastPongAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  rttMs: Type.Union([Type.Number(), Type.Null()]),
  messagesFromClient: Type.Integer(),
  messagesToClient: Type.Integer(),
  bytesFromClient: Type.Integer(),
  bytesToClient: Type.Integer()
}, { $id: 'Connection', title: 'Connection' })

/** A connection as the admin API shows it: what `Bridge.toJSON()` returns, typed from the schema. */
export type ConnectionView = Static<typeof Connection>

export const ErrorBody = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String(),
  error: Type.String(),
  message: Type.String()
}, { $id: 'Error', title: 'Error' })

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) })
