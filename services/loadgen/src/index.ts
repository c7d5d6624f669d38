// @switchboard/loadgen: the load generator, for the CLI (`pnpm loadtest`) and programmatic runs.
export { runLoadTest, createDriver } from "./run.js";
export type { RunIO, RunResult } from "./run.js";
export { parseCommandLine, USAGE, UsageError } from "./config.js";
export type { CommandLine } from "./config.js";
export { DEFAULTS, MODES } from "./options.js";
export type { LoadgenOptions, Mode } from "./options.js";
export type { LoadReport, TimelinePoint, ProcessReport, ErrorCount, Phase } from "./report.js";
export { cpuMicrosPerSend, writeReport, summarize } from "./report.js";
export { renderHtmlReport, lineChart } from "./html-report.js";
export { Verifier } from "./verifier.js";
export type { VerificationReport, ReceiveVerdict, VerifierExample } from "./verifier.js";
export { createDeliveryDriver } from "./drivers/delivery-driver.js";
export type { DeliveryDriverOptions, DeliveryMode } from "./drivers/delivery-driver.js";
export { createGatewayDriver, isRetryable } from "./drivers/gateway-driver.js";
export type { GatewayDriverOptions, GatewayTargets } from "./drivers/gateway-driver.js";
export type {
  DeviceCopy,
  DeviceListener,
  DeviceRef,
  DirectMessage,
  Driver,
  GroupMessage,
  IncomingMessage,
  RegisterAccountRequest,
  RegisterDeviceRequest,
  SendResult,
} from "./drivers/driver.js";
export type { WatchedProcess } from "./proc-sampler.js";
export type { AppName } from "./topology.js";
export {
  TARGETS,
  TARGET_IDS,
  judge,
  measurementOf,
  medianOf,
  idleMeasurementOf,
  renderVerdicts,
  renderVerdictsMarkdown,
} from "./targets.js";
export type { Target, TargetId, Measurement, Verdict } from "./targets.js";
