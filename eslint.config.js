import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import globals from 'globals'

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'test/artifacts/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off'
    }
  },
  // The layering: src/gateway/ (the composition root) -> plugins/, routes/ -> the core (the rest
  // of src/). A relative specifier climbing to plugins/ or routes/ (`../plugins/x.js`,
  // `../../routes/x.js`) is what these patterns catch; scripts/check-cycles.mjs adds that no two
  // modules import each other, even through others. Dynamic `import('...')` is not seen by
  // no-restricted-imports; plugins/admin.ts uses one for routes/admin/ui.ts (a plugin registering
  // a route, which these rules allow anyway).
  {
    // The core: plain modules that know nothing of the Fastify wiring, types included.
    // src/index.ts (the package's entry) is the exception: it pulls in the plugins' `declare
    // module 'fastify'` augmentations and re-exports a few of their types and helpers.
    files: ['src/**/*.ts'],
    ignores: ['src/gateway/**', 'src/index.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { regex: '^(\\.\\./)+(plugins|routes)(/|$)', message: 'The core (src/ outside src/gateway/) may not import plugins/ or routes/: only the composition root src/gateway/ wires them.' },
          { regex: '^\\.{1,2}/(.*/)?gateway(/|$)', message: 'The composition root src/gateway/ imports the core, not the other way round.' }
        ]
      }]
    }
  },
  {
    // The Fastify plugins reach the core, never the composition root that registers them.
    files: ['plugins/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { regex: '^(\\.\\./)+src/gateway(/|$)', message: 'plugins/ may not import the composition root src/gateway/ (it registers them).' }
        ]
      }]
    }
  },
  {
    // Route plugins reach the gateway through decorators (fastify.connections, fastify.gatewayConfig,
    // fastify.reloadGateway...); they may `import type` anything. Values only from these pure
    // helpers of src/, which they use today:
    // - src/errors.ts: the GW_ERR_* codes;
    // - src/close-codes.ts: close-code constants and isAdminCloseCode (DELETE /connections/:id);
    // - src/admin/auth.ts: the admin-token check (its lockout counts are fastify.adminAuthFailures);
    // - src/admin/schemas.ts: the admin API's JSON schemas.
    files: ['routes/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', {
        patterns: [
          {
            regex: '^(\\.\\./)+src/(?!(errors|close-codes|admin/auth|admin/schemas)\\.js$)',
            allowTypeImports: true,
            message: 'routes/ may import from src/ only types and the helpers src/errors.ts, src/close-codes.ts, src/admin/auth.ts, src/admin/schemas.ts; reach the rest through decorators.'
          },
          {
            regex: '^(\\.\\./)+plugins/',
            allowTypeImports: true,
            message: 'routes/ may import only types from plugins/; reach what the plugins offer through decorators.'
          }
        ]
      }]
    }
  },
  {
    // The admin dashboard: ES modules that run in the browser as they are (no build step).
    files: ['ui/**/*.js'],
    languageOptions: { sourceType: 'module', globals: { ...globals.browser } }
  }
)
