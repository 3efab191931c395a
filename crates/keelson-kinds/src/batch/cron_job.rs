//! The CronJob kind (batch/v1): defaults, validation and the `kubectl get cronjobs` table.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::CronJob;
use serde_json::{Value, json};

use crate::Column;
use crate::core::pod_defaults::{self, set, set_str};
use crate::typed::Typed;
use crate::util::{
    AGE, NAME, age, age_cell, arr_at, at, col, i, int_col, name_cell, s, str_at, wide,
};
use crate::workload::{containers_and_images, format_label_selector};

pub static STRATEGY: Typed<CronJob> = Typed::new("CronJob", "v1")
    .defaults(defaults)
    .prepare(|obj| obj["status"] = json!({}))
    .validate(crate::batch::validate_cron_job)
    .table(COLUMNS, row)
    .status(true);

fn defaults(cj: &mut CronJob) {
    let spec = cj.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.concurrency_policy, "Allow");
    set(&mut spec.suspend, false);
    set(&mut spec.successful_jobs_history_limit, 3);
    set(&mut spec.failed_jobs_history_limit, 1);
    if let Some(job) = &mut spec.job_template.spec {
        pod_defaults::template(&mut job.template);
    }
}

static COLUMNS: &[Column] = &[
    NAME,
    col(
        "Schedule",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    col(
        "Timezone",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    crate::Column {
        name: "Suspend",
        type_: "boolean",
        format: "",
        description: "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.",
        priority: 0,
    },
    int_col("Active", "A list of pointers to currently running jobs."),
    col(
        "Last Schedule",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    wide("Containers", "Names of each container in the template."),
    wide(
        "Images",
        "Images referenced by each container in the template.",
    ),
    wide(
        "Selector",
        "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    ),
];

fn row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let job_spec = at(obj, &["spec", "jobTemplate", "spec"]);
    let (containers, images) =
        containers_and_images(job_spec.and_then(|j| at(j, &["template", "spec"])));
    let suspend = match at(obj, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last = match str_at(obj, &["status", "lastScheduleTime"]) {
        Some(t) => age(Some(t), now),
        None => "<none>".to_string(),
    };
    vec![
        name_cell(obj),
        s(str_at(obj, &["spec", "schedule"]).unwrap_or("")),
        s(str_at(obj, &["spec", "timeZone"]).unwrap_or("<none>")),
        s(suspend),
        i(arr_at(obj, &["status", "active"]).len() as i64),
        s(last),
        age_cell(obj, now),
        containers,
        images,
        s(format_label_selector(
            job_spec.and_then(|j| j.get("selector")),
        )),
    ]
}
