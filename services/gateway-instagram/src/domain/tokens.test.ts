import { describe, expect, it } from "vitest";
import { generateAccessToken, tokenDigest } from "./tokens.js";

describe("tokenDigest", () => {
  it("is the SHA-256 of the token's UTF-8 bytes, as stored for every token issued", () => {
    expect(tokenDigest("a-token-of-43-characters-in-base64url-form0").toString("hex")).toBe(
      "f74866cc7f55337ffcda9019bc6258e11384087e47aa2fb0e4f2d79196ecfbab",
    );
    const token = generateAccessToken();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(tokenDigest(token)).toHaveLength(32);
    expect(tokenDigest(token).equals(tokenDigest(generateAccessToken()))).toBe(false);
  });
});
