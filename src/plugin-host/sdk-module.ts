import { plugin as bunPlugin } from 'bun'
import * as sdk from '../plugin-sdk/index.ts'

export const SDK_SPECIFIER = '@conduit/plugin-sdk'
let registered = false

/**
 * Plugins loaded from disk import `@conduit/plugin-sdk`. A compiled binary cannot resolve that name from the
 * plugin's folder, and a copy in the plugin's node_modules would be a second instance; a virtual module hands
 * every plugin the host's own SDK, in development and in the binary alike.
 */
export function registerSdkModule() {
  if (registered) return
  registered = true
  bunPlugin({
    name: 'conduit-plugin-sdk',
    setup(build) {
      build.module(SDK_SPECIFIER, () => ({ exports: { ...sdk }, loader: 'object' }))
    },
  })
}
