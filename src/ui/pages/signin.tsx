import { useState } from 'preact/hooks'
import { signIn, type Session } from '../api.ts'
import { ErrorBox, Field, useAction } from '../components.tsx'

/** The master key (or a virtual key, read-only) is sent once and exchanged for an HttpOnly session cookie. */
export function SignIn({ notice, onSignedIn }: { notice?: string | null; onSignedIn(session: Session): void }) {
  const [key, setKey] = useState('')
  const { busy, error, submit } = useAction()
  return (
    <main class="signin">
      <div class="panel">
        <h1>Sign in to Conduit</h1>
        {notice ? (
          <p class="notice" role="status">
            {notice}
          </p>
        ) : null}
        <form
          class="form"
          onSubmit={submit(async () => {
            const session = await signIn(key)
            setKey('')
            onSignedIn(session)
          })}
        >
          <Field
            label="Master key or virtual key"
            type="password"
            value={key}
            onInput={setKey}
            required
            autoComplete="current-password"
            hint="A virtual key signs in read-only and sees only its own models, usage and requests."
          />
          <ErrorBox error={error} />
          <div class="actions">
            <button class="primary" type="submit" disabled={busy}>
              Sign in
            </button>
          </div>
        </form>
      </div>
    </main>
  )
}
