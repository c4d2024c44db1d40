//! Prometheus metrics of the controller, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeployLabels {
    pub stack: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StackLabel {
    pub stack: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub provider: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn duration_buckets() -> Histogram {
    // 0.5 s .. ~17 min: deploys, not requests.
    Histogram::new(exponential_buckets(0.5, 2.0, 12))
}

/// Every metric berth exports.
pub struct Metrics {
    registry: Registry,
    pub deploys: Family<DeployLabels, Counter>,
    pub duration: Family<StackLabel, Histogram, fn() -> Histogram>,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub queue_depth: Gauge,
    pub last_success: Family<StackLabel, Gauge>,
    pub drift: Family<StackLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let deploys = Family::<DeployLabels, Counter>::default();
        registry.register("deploys", "Deploys by stack and outcome", deploys.clone());
        let duration = Family::<StackLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_buckets as fn() -> Histogram,
        );
        registry.register("deploy_duration_seconds", "How long deploys took, verification included", duration.clone());
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register("webhook_requests", "Webhook requests by provider and result", webhooks.clone());
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Deploys queued or running", queue_depth.clone());
        let last_success = Family::<StackLabel, Gauge>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "When each stack last deployed successfully",
            last_success.clone(),
        );
        let drift = Family::<StackLabel, Gauge>::default();
        registry.register("drift", "1 when the stack drifted from its last successful deploy", drift.clone());
        let build = Family::<BuildLabels, Gauge>::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "berth's version", build);
        Metrics { registry, deploys, duration, webhooks, queue_depth, last_success, drift }
    }
}

impl Metrics {
    /// Record a settled deploy.
    pub fn deployed(&self, stack: &str, outcome: &str, seconds: f64) {
        self.deploys.get_or_create(&DeployLabels { stack: stack.into(), outcome: outcome.into() }).inc();
        self.duration.get_or_create(&StackLabel { stack: stack.into() }).observe(seconds);
        if outcome == "succeeded" {
            self.last_success.get_or_create(&StackLabel { stack: stack.into() }).set(crate::state::now());
        }
    }

    pub fn webhook(&self, provider: &str, result: &str) {
        self.webhooks.get_or_create(&WebhookLabels { provider: provider.into(), result: result.into() }).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
