import { describe, expect, it } from "vitest";
import { digestToken, generateToken } from "./tokens.js";

describe("digestToken", () => {
  it("is the SHA-256 of the token's UTF-8 bytes, as stored for every token issued", () => {
    expect(digestToken("a-token-of-43-characters-in-base64url-form0").toString("hex")).toBe(
      "f74866cc7f55337ffcda9019bc6258e11384087e47aa2fb0e4f2d79196ecfbab",
    );
    const token = generateToken();
    expect(digestToken(token)).toHaveLength(32);
    expect(digestToken(token).equals(digestToken(generateToken()))).toBe(false);
  });
});
