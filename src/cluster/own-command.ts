/** The command line that starts this program again: `bun src/main.ts …` in development, `conduit …` compiled. */
export const ownCommand = () =>
  Bun.isStandaloneExecutable ? [process.execPath, ...process.argv.slice(2)] : [process.execPath, Bun.main, ...process.argv.slice(2)]
