import {ChunkyError, normalizePrefix, type ShareAnswer, type SharePayload, sharePath, type ShareRequest, signShare} from '../protocol/index.js'
import type {MasterContext} from './context.js'
import type {Views} from './views.js'

/**
 * POST /api/share: signs a share link (protocol/share.ts) for a committed name, or for every name
 * under a prefix, valid until now + expiresInMs. Any node checks it with the key it got in `welcome`.
 */
export function createShare(ctx: MasterContext, views: Views, request: ShareRequest): ShareAnswer {
  const exp = Math.ceil((ctx.clock.now() + request.expiresInMs) / 1000)
  let payload: SharePayload
  let name: string
  if (request.name !== undefined) {
    views.manifest(request.name) // FILE_NOT_FOUND (404) unless committed: a link to nothing helps nobody
    payload = {n: request.name, exp}
    name = request.name
  } else {
    const prefix = normalizePrefix(request.prefix ?? '')
    payload = {p: prefix, exp}
    name = `${prefix}/`
  }
  if (!/^[0-9a-f]{64}$/.test(ctx.grantKey)) throw new ChunkyError('INTERNAL', 'the grant key is not set')
  const path = sharePath(signShare(payload, ctx.grantKey), payload)
  ctx.log.info({event: 'share.signed', name, expiresAt: new Date(exp * 1000).toISOString()}, `signed a share link for ${name} until ${new Date(exp * 1000).toISOString()}`)
  return {name, path, expiresAt: new Date(exp * 1000).toISOString()}
}
