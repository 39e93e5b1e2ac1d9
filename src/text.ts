/** Text from elsewhere (a tool's output, a name someone typed) cut to `n` characters, with an ellipsis when cut. */
export const clip = (s: string, n = 300): string => (s.length > n ? `${s.slice(0, n)}…` : s);
