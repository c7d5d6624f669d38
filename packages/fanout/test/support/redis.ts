// Redis servers and clusters for these tests come from the shared test harness.
export * from "@switchboard/testkit/redis-servers";
