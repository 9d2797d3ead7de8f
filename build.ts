/**
 * `bun run build` → dist/conduit: one executable with the runtime, the gateway and its built-in plugins.
 * It never autoloads a bunfig.toml or .env from the directory it is started in (a bunfig `preload` there would
 * run foreign code inside the gateway); configuration comes from its flags, environment and --config file.
 */
import pkg from './package.json'

const result = await Bun.build({
  // The row writer's thread is a second entrypoint, which a Worker loads by a URL relative to the code starting it
  // (src/store/row-writer.ts); that code ends up in a chunk at the root, so the entry must be there too (`naming`).
  entrypoints: ['src/main.ts', 'src/store/row-writer-thread.ts'],
  naming: { entry: '[name].[ext]' },
  target: 'bun',
  format: 'esm',
  compile: { outfile: 'dist/conduit', autoloadBunfig: false, autoloadDotenv: false, autoloadTsconfig: false, autoloadPackageJson: false },
  // Whitespace and syntax only: names stay readable in stack traces and plugin errors.
  minify: { whitespace: true, syntax: true, identifiers: false },
  bytecode: true,
  // The primary of several workers imports only the cluster code: split, it maps and loads no more than that.
  splitting: true,
  define: { CONDUIT_VERSION: JSON.stringify(pkg.version) },
})
if (!result.success) {
  for (const log of result.logs) console.error(log)
  process.exit(1)
}
const file = Bun.file('dist/conduit')
console.log(`dist/conduit ${(file.size / 1024 / 1024).toFixed(1)} MiB`)
