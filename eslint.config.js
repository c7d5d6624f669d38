// One lint setup for the whole workspace: typed rules, and process.env fenced into config.ts.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "**/dist/**",
      "**/node_modules/**",
      "packages/proto/src/gen/**",
      "**/*.js",
      "**/*.cjs",
      "reports/**",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ["vitest.shared.ts"] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/require-await": "off",
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: false }],
      "no-restricted-properties": [
        "error",
        { object: "process", property: "env", message: "Read the environment only in config.ts." },
      ],
    },
  },
  {
    files: [
      "**/config.ts",
      "**/test/**",
      "**/*.test.ts",
      "**/bench/**",
      "**/scripts/**",
      "**/vitest.*.ts",
      "packages/testkit/src/**",
    ],
    rules: { "no-restricted-properties": "off" },
  },
);
