import { useRef, useState } from 'preact/hooks'
import { EventSourceParserStream } from 'eventsource-parser/stream'
import { admin } from '../api.ts'
import { ErrorBox, Field, PageHeader, Select, messageOf, useResource } from '../components.tsx'

interface Message {
  role: 'system' | 'user' | 'assistant'
  content: string
}

/**
 * Chat with a model through the gateway's own /v1/chat/completions, streamed, with a virtual key typed here (it
 * stays in this page's memory: keys are stored hashed, so the console cannot supply one).
 */
export function Playground() {
  const models = useResource(() => admin.get<{ data: { name: string }[] }>('/models'), [])
  const [key, setKey] = useState('')
  const [model, setModel] = useState('')
  const [system, setSystem] = useState('')
  const [prompt, setPrompt] = useState('')
  const [messages, setMessages] = useState<Message[]>([])
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  const abort = useRef<AbortController | null>(null)
  const chosen = model || models.data?.data[0]?.name || ''

  const send = async () => {
    const history: Message[] = [...messages, { role: 'user', content: prompt }]
    setMessages([...history, { role: 'assistant', content: '' }])
    setPrompt('')
    setError(null)
    setBusy(true)
    const controller = (abort.current = new AbortController())
    let reply = ''
    try {
      const res = await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.trim()}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: chosen, stream: true, messages: [...(system.trim() ? [{ role: 'system', content: system }] : []), ...history] }),
        signal: controller.signal,
        credentials: 'omit',
      })
      if (!res.ok || !res.body) {
        const body = await res.json().catch(() => null)
        throw new Error(body?.error?.message ?? `HTTP ${res.status}`)
      }
      const events = res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream())
      for await (const event of events) {
        if (event.data === '[DONE]') break
        const chunk = JSON.parse(event.data)
        if (chunk.error) throw new Error(chunk.error.message)
        reply += chunk.choices?.[0]?.delta?.content ?? ''
        setMessages([...history, { role: 'assistant', content: reply }])
      }
    } catch (err) {
      if ((err as Error).name !== 'AbortError') setError(messageOf(err))
    } finally {
      setBusy(false)
      abort.current = null
    }
  }

  return (
    <>
      <PageHeader title="Playground">
        <button type="button" onClick={() => setMessages([])} disabled={busy || messages.length === 0}>
          New chat
        </button>
      </PageHeader>
      <form
        class="form"
        onSubmit={(e) => {
          e.preventDefault()
          void send()
        }}
      >
        <div class="grid-2">
          <Field label="Virtual key" type="password" value={key} onInput={setKey} required placeholder="condt_…" hint="Used for these requests only; not stored." />
          <Select label="Model" value={chosen} onChange={setModel} options={(models.data?.data ?? []).map((m) => ({ value: m.name, label: m.name }))} required />
        </div>
        <Field label="System prompt (optional)" value={system} onInput={setSystem} />
        <section class="chat" aria-label="Conversation" aria-live="polite">
          {messages.map((m) => (
            <div class={`message ${m.role}`}>
              <div class="who-said">{m.role}</div>
              {m.content || (busy ? '…' : '')}
            </div>
          ))}
        </section>
        <label>
          Message
          <textarea
            rows={3}
            value={prompt}
            required
            onInput={(e) => setPrompt((e.target as HTMLTextAreaElement).value)}
            onKeyDown={(e) => {
              // Ctrl/Cmd+Enter sends, as in most chat tools; Enter alone makes a new line.
              if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
                e.preventDefault()
                ;(e.currentTarget as HTMLTextAreaElement).form?.requestSubmit()
              }
            }}
          />
        </label>
        <ErrorBox error={error} />
        <div class="actions">
          {busy ? (
            <button type="button" onClick={() => abort.current?.abort()}>
              Stop
            </button>
          ) : null}
          <button class="primary" type="submit" disabled={busy || !chosen}>
            Send
          </button>
        </div>
      </form>
    </>
  )
}
