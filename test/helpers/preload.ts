// Test-wide setup.
process.env.CONDUIT_LOG_LEVEL ??= 'silent'
