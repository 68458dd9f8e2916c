//! Bowman's own statements as DataFusion plans.
//!
//! A Bowman statement that DataFusion cannot plan itself becomes an extension node of the
//! logical plan (one file each), with a physical node that runs it. Everything then goes the
//! same way: DataFusion's optimizers see the whole statement, `EXPLAIN` and `EXPLAIN ANALYZE`
//! show what runs, and one function executes every plan.
//!
//! - [`write`]: a write to a tracked file table: the exchange that decides which writer gets a
//!   row (DISTRIBUTE BY, or the partition columns), the sort within each writer (SORT BY), the
//!   writers running in parallel, and the catalog commit that makes their files live.

pub(crate) mod roll;
pub(crate) mod write;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session as DfSession;
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

/// DataFusion's physical planner with the extension planners the engine was given (Bowman's
/// own nodes, and those of connectors such as the remote databases' pushed-down queries).
pub struct BowmanQueryPlanner {
    planners: Vec<Arc<dyn ExtensionPlanner + Send + Sync>>,
}

impl std::fmt::Debug for BowmanQueryPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BowmanQueryPlanner").field("extension_planners", &self.planners.len()).finish()
    }
}

impl BowmanQueryPlanner {
    /// Bowman's planners first, then `others` (each answers only for its own nodes).
    pub fn new(others: Vec<Arc<dyn ExtensionPlanner + Send + Sync>>) -> Self {
        let mut planners: Vec<Arc<dyn ExtensionPlanner + Send + Sync>> = vec![Arc::new(write::WritePlanner)];
        planners.extend(others);
        BowmanQueryPlanner { planners }
    }
}

#[async_trait]
impl QueryPlanner for BowmanQueryPlanner {
    async fn create_physical_plan(&self, plan: &LogicalPlan, session: &dyn DfSession) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(self.planners.clone()).create_physical_plan(plan, session).await
    }
}
