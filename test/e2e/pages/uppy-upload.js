// A page's Uppy upload into chunky: the README's Uppy snippet ("Uploading from a browser") is the
// lines between the two README markers, which test/e2e/tus.browser.test.ts checks it shows. That test
// bundles this file for headless Chromium and runs it from a page of another origin than the nodes.
import Uppy from '@uppy/core'
import Tus from '@uppy/tus'

/** Uploads `file` (a File or Blob) through `link`, the JSON of `chunky share --upload NAME --json`. */
export async function uploadWithUppy(file, link) {
  // README begin
  const uppy = new Uppy().use(Tus, {endpoint: link.url, chunkSize: 5 * 1024 * 1024})
  uppy.addFile({name: link.name, type: file.type, data: file}) // Uppy sends the file's name as `name`: the chunky name
  const {successful, failed} = await uppy.upload()
  // README end
  return failed.length === 0 ? successful[0].uploadURL : `error: ${failed[0].error}`
}
