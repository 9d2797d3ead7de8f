const compiled = new Map<string, RegExp>()

/** `*` matches any run of characters, `?` one character; everything else is literal. */
function toRegExp(glob: string): RegExp {
  let re = compiled.get(glob)
  if (!re) {
    const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')
    re = new RegExp(`^${body}$`)
    if (compiled.size > 10_000) compiled.clear()
    compiled.set(glob, re)
  }
  return re
}

/** A null list allows everything; an empty list allows nothing. */
export const allowedBy = (name: string, globs: string[] | null) => globs === null || globs.some((g) => toRegExp(g).test(name))
