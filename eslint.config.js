import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', '**/node_modules/', '**/.venv/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // The supervisor knows nothing of cluster or HTTP; the front worker nothing of child processes.
    // lib/ipc is the only bridge between them.
    files: ['lib/supervisor/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['node:cluster', 'node:http', 'express'],
          patterns: ['../worker/*', '../primary/*', '../ipc/*'],
        },
      ],
    },
  },
  {
    // The one exception: the health check speaks HTTP to a backend, as a probe (GET of
    // service_health_path), never on the request path.
    files: ['lib/supervisor/health.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['node:cluster', 'express'],
          patterns: ['../worker/*', '../primary/*', '../ipc/*'],
        },
      ],
    },
  },
  {
    files: ['lib/worker/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: ['node:child_process', 'node:cluster'],
          patterns: ['../supervisor/*', '../primary/*'],
        },
      ],
    },
  },
  {
    // The dashboard runs in the browser, as it is served.
    files: ['lib/admin/public/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: {
        window: 'readonly',
        document: 'readonly',
        sessionStorage: 'readonly',
        location: 'readonly',
        URLSearchParams: 'readonly',
        fetch: 'readonly',
        getComputedStyle: 'readonly',
        TextDecoderStream: 'readonly',
        setTimeout: 'readonly',
        console: 'readonly',
      },
    },
  },
  {
    // The worker's entry point reads its own cluster id, and nothing else of node:cluster.
    files: ['lib/worker/main.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: ['node:child_process'], patterns: ['../supervisor/*', '../primary/*'] },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        URL: 'readonly',
        Buffer: 'readonly',
        performance: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
      },
    },
  },
);
