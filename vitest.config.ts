import {defineConfig} from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Daemons and child processes need real time; each test file bounds its own waits with deadlines.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: e2e files start several processes each, so run files two at a time at most.
    fileParallelism: true,
    maxWorkers: 2,
    disableConsoleIntercept: true,
  },
})
