/**
 * Every problem found while parsing the environment, one per line in `message`
 * (e.g. `GRPC_PORT: expected an integer 0..65535, got "abc"`). Secret values never appear.
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";

  constructor(readonly problems: readonly string[]) {
    super(problems.join("\n"));
  }
}
