import { useState } from 'preact/hooks'
import { signIn, type Session } from '../api.ts'
import { ErrorBox, Field, messageOf } from '../components.tsx'

/** The master key (or a virtual key, read-only) is sent once and exchanged for an HttpOnly session cookie. */
export function SignIn({ onSignedIn }: { onSignedIn(session: Session): void }) {
  const [key, setKey] = useState('')
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  return (
    <main class="signin">
      <div class="panel">
        <h1>Sign in to Conduit</h1>
        <form
          class="form"
          onSubmit={async (e) => {
            e.preventDefault()
            setBusy(true)
            setError(null)
            try {
              const session = await signIn(key)
              setKey('')
              onSignedIn(session)
            } catch (err) {
              setError(messageOf(err))
            } finally {
              setBusy(false)
            }
          }}
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
