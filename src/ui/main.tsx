import { render } from 'preact'
import { useEffect, useState } from 'preact/hooks'
import { LocationProvider, Route, Router, useLocation } from 'preact-iso'
import { currentSession, setCsrf, signOut, whenSignedOut, type Session } from './api.ts'
import { SignIn } from './pages/signin.tsx'
import { Overview } from './pages/overview.tsx'
import { Providers } from './pages/providers.tsx'
import { Models } from './pages/models.tsx'
import { Keys } from './pages/keys.tsx'
import { Usage } from './pages/usage.tsx'
import { RequestDetail, Requests } from './pages/requests.tsx'
import { Playground } from './pages/playground.tsx'

const PAGES: { path: string; label: string; admin?: boolean }[] = [
  { path: '/ui/', label: 'Overview' },
  { path: '/ui/providers', label: 'Providers', admin: true },
  { path: '/ui/models', label: 'Models' },
  { path: '/ui/keys', label: 'Keys' },
  { path: '/ui/usage', label: 'Usage' },
  { path: '/ui/requests', label: 'Requests' },
  { path: '/ui/playground', label: 'Playground' },
]

function Nav({ session, onSignOut }: { session: Session; onSignOut(): void }) {
  const { path } = useLocation()
  const current = (p: string) => (p === '/ui/' ? path === '/ui' || path === '/ui/' : path.startsWith(p))
  return (
    <header class="sidebar">
      <div class="brand">Conduit</div>
      <nav class="nav" aria-label="Main">
        {PAGES.filter((p) => !p.admin || session.role === 'admin').map((p) => (
          <a href={p.path} aria-current={current(p.path) ? 'page' : undefined}>
            {p.label}
          </a>
        ))}
      </nav>
      <div class="who">
        <span>{session.role === 'admin' ? 'Administrator' : `Key: ${session.key?.name ?? ''} (read-only)`}</span>
        <button type="button" class="small" onClick={onSignOut}>
          Sign out
        </button>
      </div>
    </header>
  )
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined)
  /** Why the sign-in shows again when the server ended the session (it expired, or was signed out elsewhere). */
  const [ended, setEnded] = useState<string | null>(null)
  useEffect(() => {
    whenSignedOut(() => {
      setEnded('Your session has ended: it expired or was signed out. Sign in again to go on.')
      setSession(null)
    })
    currentSession().then(
      (s) => {
        setCsrf(s.csrf_token)
        setSession(s)
      },
      () => setSession(null),
    )
  }, [])
  if (session === undefined) return <p class="empty">Loading…</p>
  if (session === null) {
    return (
      <SignIn
        notice={ended}
        onSignedIn={(s) => {
          setCsrf(s.csrf_token)
          setEnded(null)
          setSession(s)
        }}
      />
    )
  }
  const readOnly = session.role !== 'admin'
  return (
    <LocationProvider>
      <div class="shell">
        <Nav
          session={session}
          onSignOut={async () => {
            await signOut().catch(() => {})
            setCsrf('')
            setSession(null)
          }}
        />
        <main id="main">
          <Router>
            <Route path="/ui" component={() => <Overview />} />
            <Route path="/ui/" component={() => <Overview />} />
            <Route path="/ui/providers" component={() => (readOnly ? <p class="empty">Providers are managed with the master key.</p> : <Providers />)} />
            <Route path="/ui/models" component={() => <Models readOnly={readOnly} />} />
            <Route path="/ui/keys" component={() => <Keys readOnly={readOnly} />} />
            <Route path="/ui/usage" component={() => <Usage readOnly={readOnly} />} />
            <Route path="/ui/requests" component={() => <Requests readOnly={readOnly} />} />
            <Route path="/ui/requests/:id" component={({ id }: { id: string }) => <RequestDetail id={id} />} />
            <Route path="/ui/playground" component={() => <Playground />} />
            <Route default component={() => <p class="empty">There is no such page.</p>} />
          </Router>
        </main>
      </div>
    </LocationProvider>
  )
}

render(<App />, document.getElementById('app')!)
