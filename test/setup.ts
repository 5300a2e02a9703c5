import { setDefaultTimeout } from 'bun:test'

// Integration tests start real servers and child processes; on a 2-core machine some take
// longer than bun's 5 s default. bunfig's [test] timeout is not honoured by every bun release.
setDefaultTimeout(30_000)
