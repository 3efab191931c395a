//! What the runtime holds for one pod, reduced from CRI listings and statuses to the facts the
//! planner and the status builder read.

use keelson_cri::cri;

/// One sandbox of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_ns: i64,
}

/// The state of one container instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One container instance (a name has one per restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub sandbox_id: String,
    pub state: State,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub created_ns: i64,
    pub started_ns: i64,
    pub finished_ns: i64,
    pub image_ref: String,
    pub log_path: String,
}

/// Everything the runtime holds for one pod UID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRuntime {
    /// Newest first.
    pub sandboxes: Vec<Sandbox>,
    pub instances: Vec<Instance>,
    /// The IP of the newest sandbox, when it has one.
    pub ip: Option<String>,
}

impl PodRuntime {
    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.first()
    }

    /// The instances of container `name`, newest (highest attempt) first.
    pub fn of(&self, name: &str) -> Vec<&Instance> {
        let mut v: Vec<&Instance> = self.instances.iter().filter(|i| i.name == name).collect();
        v.sort_by(|a, b| {
            b.attempt
                .cmp(&a.attempt)
                .then(b.created_ns.cmp(&a.created_ns))
        });
        v
    }

    /// The newest instance of `name`.
    pub fn latest(&self, name: &str) -> Option<&Instance> {
        self.of(name).into_iter().next()
    }

    /// Whether anything still runs (a ready sandbox or a running container).
    pub fn anything_running(&self) -> bool {
        self.sandboxes.iter().any(|s| s.ready)
            || self
                .instances
                .iter()
                .any(|i| matches!(i.state, State::Running | State::Unknown))
    }

    /// Whether the runtime holds nothing at all for the pod.
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.instances.is_empty()
    }
}

/// A container state from CRI's enum.
pub fn state_of(s: i32) -> State {
    match cri::ContainerState::try_from(s) {
        Ok(cri::ContainerState::ContainerCreated) => State::Created,
        Ok(cri::ContainerState::ContainerRunning) => State::Running,
        Ok(cri::ContainerState::ContainerExited) => State::Exited,
        _ => State::Unknown,
    }
}

/// A sandbox from a CRI listing.
pub fn sandbox_of(s: &cri::PodSandbox) -> Sandbox {
    Sandbox {
        id: s.id.clone(),
        attempt: s.metadata.as_ref().map_or(0, |m| m.attempt),
        ready: s.state == cri::PodSandboxState::SandboxReady as i32,
        created_ns: s.created_at,
    }
}

/// A container instance from its CRI listing entry and (when fetched) its status.
pub fn instance_of(c: &cri::Container, status: Option<&cri::ContainerStatus>) -> Instance {
    let meta = c.metadata.as_ref();
    let mut i = Instance {
        id: c.id.clone(),
        name: meta.map(|m| m.name.clone()).unwrap_or_default(),
        attempt: meta.map_or(0, |m| m.attempt),
        sandbox_id: c.pod_sandbox_id.clone(),
        state: state_of(c.state),
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        created_ns: c.created_at,
        started_ns: 0,
        finished_ns: 0,
        image_ref: c.image_ref.clone(),
        log_path: String::new(),
    };
    if let Some(s) = status {
        i.state = state_of(s.state);
        i.exit_code = s.exit_code;
        i.reason = s.reason.clone();
        i.message = s.message.clone();
        i.started_ns = s.started_at;
        i.finished_ns = s.finished_at;
        if !s.image_ref.is_empty() {
            i.image_ref = s.image_ref.clone();
        }
        i.log_path = s.log_path.clone();
    }
    i
}
