//! OCI images keelson makes and loads: image archives written from a list of files
//! (`archive`), the sandbox image built from the project's own pause program (`pause`), and
//! importing docker-save or OCI archives into containerd with `ctr` (`import`).

pub mod archive;
pub mod import;
pub mod pause;

pub use archive::{
    Entry, Error as ArchiveError, ImageSpec, layer_tar, oci_arch, sha256_digest, write_oci_archive,
};
pub use import::{
    ArchiveKind, Error as ImportError, archive_kind, ensure_pause_image, import_archive,
    list_images, parse_imported_names,
};
pub use pause::{PAUSE_BINARY, PAUSE_IMAGE, pause_image_spec, write_pause_archive};

/// The namespace containerd's CRI plugin keeps its images in.
pub const CRI_NAMESPACE: &str = "k8s.io";
