import {ChunkyError, normalizePrefix, type ShareAnswer, type SharePayload, sharePath, type ShareRequest, signShare, signUploadLink, uploadLinkPath, type UploadShareRequest} from '../protocol/index.js'
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

/**
 * POST /api/share/upload: signs an upload link for one name (it need not exist yet), at most
 * maxSize bytes, until now + expiresInMs. Its path is the tus endpoint a web page gives its client.
 */
export function createUploadShare(ctx: MasterContext, request: UploadShareRequest): ShareAnswer {
  const exp = Math.ceil((ctx.clock.now() + request.expiresInMs) / 1000)
  if (!/^[0-9a-f]{64}$/.test(ctx.grantKey)) throw new ChunkyError('INTERNAL', 'the grant key is not set')
  const token = signUploadLink({u: request.name, ...(request.maxSize !== undefined ? {max: request.maxSize} : {}), exp}, ctx.grantKey)
  const expiresAt = new Date(exp * 1000).toISOString()
  ctx.log.info({event: 'share.upload_signed', name: request.name, maxSize: request.maxSize, expiresAt}, `signed an upload link for ${request.name} until ${expiresAt}`)
  return {name: request.name, path: uploadLinkPath(token), expiresAt}
}
