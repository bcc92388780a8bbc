// The few browser names that page.evaluate() callbacks in the Chromium tests use. Those callbacks run
// in the browser, not in Node, so the tests are type-checked without the DOM library.
interface HTMLElement {
  dataset: Record<string, string | undefined>
}
interface HTMLVideoElement extends HTMLElement {
  currentTime: number
  readonly duration: number
  readonly readyState: number
  readonly error: {message: string} | null
  play(): Promise<void>
  pause(): void
  addEventListener(type: string, listener: () => void, options?: {once?: boolean}): void
}
declare const document: {getElementById(id: string): HTMLElement | null}
declare const window: unknown
declare const sessionStorage: {getItem(key: string): string | null}
