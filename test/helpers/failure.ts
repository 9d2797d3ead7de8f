/** Runs `call` and returns the error it raised; a call that succeeds fails the test. */
export async function failure(call: () => Promise<unknown>): Promise<any> {
  try {
    await call()
  } catch (error) {
    return error
  }
  throw new Error('expected the call to fail, it succeeded')
}
