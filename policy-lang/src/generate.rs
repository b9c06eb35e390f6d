//! Generated repositories of any size, for benchmarks and load tests.

use crate::parse::Sources;

/// A repository of `n` services in 10 namespaces: each with 3 versions, a
/// canary rollout, 5 allow-list peers, 2 SLOs and resilience settings, and
/// one organisation policy.
pub fn repository(n: usize) -> Sources {
    let mut files = Vec::with_capacity(n + 2);
    files.push((
        "meshplan.yaml".to_string(),
        "apiVersion: meshplan.dev/v1alpha1\nkind: MeshplanConfig\ntargets: [istio]\nmetrics: { url: http://prometheus.monitoring:9090 }\n".to_string(),
    ));
    files.push((
        "policies/org.yaml".to_string(),
        "apiVersion: meshplan.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: org\nspec:\n  rules:\n    - name: owner-label\n      rule: has(intent.metadata.labels.owner)\n    - name: timeout\n      match: has(intent.spec.resilience)\n      rule: intent.spec.resilience.timeout <= duration('30s')\n".to_string(),
    ));
    for i in 0..n {
        let ns = format!("team-{}", i % 10);
        let peers: String = (1..=5)
            .map(|k| format!("          - service: svc-{}\n", (i + k * 10) % n))
            .collect();
        files.push((
            format!("{ns}/svc-{i}.yaml"),
            format!(
                r#"apiVersion: meshplan.dev/v1alpha1
kind: ServiceIntent
metadata:
  name: svc-{i}
  namespace: {ns}
  labels: {{ owner: {ns} }}
spec:
  ports:
    - name: http
      port: 8080
      protocol: http
  versions:
    - name: v1
      labels: {{ app: svc-{i}, version: v1 }}
    - name: v2
      labels: {{ app: svc-{i}, version: v2 }}
    - name: v3
      labels: {{ app: svc-{i}, version: v3 }}
  resilience:
    timeout: 5s
    retries: {{ attempts: 2, perTryTimeout: 2s, retryOn: [5xx] }}
    circuitBreaker: {{ consecutiveErrors: 5 }}
  rollout:
    stable: v2
    canary: v3
    steps:
      - weight: 10
        pause: 5m
      - weight: 50
        pause: 5m
      - weight: 100
    analysis:
      successRate: {{ min: 99 }}
  access:
    allow:
      - from:
{peers}        ports: [http]
        methods: [GET]
  slos:
    - name: availability
      objective: 99.9
      sli: {{ availability: {{}} }}
    - name: latency
      objective: 99
      sli:
        latency: {{ threshold: 250ms }}
"#
            ),
        ));
    }
    Sources { files }
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_repositories_check_clean() {
        let (repo, report) = crate::check::check_sources(&super::repository(30));
        assert_eq!(repo.services.len(), 30);
        assert!(
            report.diagnostics.is_empty(),
            "{:?}",
            report.diagnostics.first()
        );
    }
}
