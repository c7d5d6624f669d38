export { AppError, Code, isAppError, codeName, httpStatusOf } from "./app-error.js";
export type { AppErrorDetails } from "./app-error.js";
