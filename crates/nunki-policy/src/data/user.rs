//! User and group resolution: the image's `User`, its `/etc/passwd` and `/etc/group`, and the
//! pod's security context, combined the way kubelet and containerd do.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};

use super::spec::User;

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// An image's accounts (empty when the image has no passwd or group file).
#[derive(Debug, Clone, Default)]
pub(crate) struct Accounts {
    passwd: Vec<PasswdEntry>,
    group: Vec<GroupEntry>,
    has_passwd: bool,
}

fn records(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(i, line)| (i + 1, line.split(':').collect()))
}

fn parse_id(field: &str, what: &str, file: &str, line: usize) -> Result<u32, String> {
    field
        .trim()
        .parse()
        .map_err(|_| format!("/etc/{file} line {line}: {what} \"{field}\" is not a number"))
}

impl Accounts {
    /// Parses the image's passwd and group texts.
    pub(crate) fn parse(passwd: Option<&str>, group: Option<&str>) -> Result<Self, String> {
        let mut accounts = Self {
            has_passwd: passwd.is_some(),
            ..Self::default()
        };
        for (line, fields) in records(passwd.unwrap_or_default()) {
            let [name, _password, uid, gid, _gecos, _home, _shell] = fields.as_slice() else {
                return Err(format!(
                    "/etc/passwd line {line}: expected 7 fields separated by ':', found {}",
                    fields.len()
                ));
            };
            accounts.passwd.push(PasswdEntry {
                name: (*name).to_owned(),
                uid: parse_id(uid, "UID", "passwd", line)?,
                gid: parse_id(gid, "GID", "passwd", line)?,
            });
        }
        for (line, fields) in records(group.unwrap_or_default()) {
            let [name, _password, gid, members] = fields.as_slice() else {
                return Err(format!(
                    "/etc/group line {line}: expected 4 fields separated by ':', found {}",
                    fields.len()
                ));
            };
            accounts.group.push(GroupEntry {
                name: (*name).to_owned(),
                gid: parse_id(gid, "GID", "group", line)?,
                members: members
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            });
        }
        Ok(accounts)
    }

    fn by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.uid == uid)
    }

    fn by_name(&self, name: &str) -> Option<&PasswdEntry> {
        self.passwd.iter().find(|e| e.name == name)
    }

    fn group_by_name(&self, name: &str) -> Option<u32> {
        self.group.iter().find(|g| g.name == name).map(|g| g.gid)
    }

    /// Groups that list the user of `uid` as a member. Like containerd, a group named after the
    /// user is skipped (github.com/burgerdev/weird-images `gid` shows the effect).
    fn member_groups(&self, uid: u32) -> Vec<u32> {
        let Some(user) = self.by_uid(uid) else {
            return Vec::new();
        };
        self.group
            .iter()
            .filter(|g| g.name != user.name && g.members.contains(&user.name))
            .map(|g| g.gid)
            .collect()
    }

    /// A user part of an image `User`: a number, or a name from the image's passwd.
    fn resolve_user(&self, user: &str) -> Result<(u32, Option<u32>), String> {
        if let Ok(uid) = user.parse::<u32>() {
            return Ok((uid, None));
        }
        match self.by_name(user) {
            Some(entry) => Ok((entry.uid, Some(entry.gid))),
            None if self.has_passwd => Err(format!(
                "the image's user \"{user}\" is not in its /etc/passwd"
            )),
            None => Err(format!(
                "the image's user \"{user}\" is a name, but the image-info entry has no passwd to resolve it (set securityContext.runAsUser, or re-fetch the image with `nunki images pull`)"
            )),
        }
    }
}

/// Security-context values, checked for range.
fn id(value: i64, field: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("{field} {value} is not between 0 and {}", u32::MAX))
}

/// The parts of the pod's security context that matter for users and groups.
#[derive(Debug, Clone, Default)]
pub(crate) struct PodUser {
    pub(crate) run_as_user: Option<u32>,
    pub(crate) run_as_group: Option<u32>,
    pub(crate) fs_group: Option<u32>,
    pub(crate) supplemental_groups: Vec<u32>,
    pub(crate) strict_supplemental_groups: bool,
}

impl PodUser {
    /// Reads `spec.securityContext`.
    pub(crate) fn from_context(context: Option<&PodSecurityContext>) -> Result<Self, String> {
        let Some(context) = context else {
            return Ok(Self::default());
        };
        Ok(Self {
            run_as_user: context
                .run_as_user
                .map(|v| id(v, "runAsUser"))
                .transpose()?,
            run_as_group: context
                .run_as_group
                .map(|v| id(v, "runAsGroup"))
                .transpose()?,
            fs_group: context.fs_group.map(|v| id(v, "fsGroup")).transpose()?,
            supplemental_groups: context
                .supplemental_groups
                .iter()
                .flatten()
                .map(|v| id(*v, "supplementalGroups entry"))
                .collect::<Result<_, _>>()?,
            strict_supplemental_groups: context.supplemental_groups_policy.as_deref()
                == Some("Strict"),
        })
    }

    fn pod_groups(&self) -> impl Iterator<Item = u32> + '_ {
        self.fs_group
            .iter()
            .copied()
            .chain(self.supplemental_groups.iter().copied())
    }
}

/// Container-level `runAsUser`/`runAsGroup`.
pub(crate) fn container_ids(
    context: Option<&SecurityContext>,
) -> Result<(Option<u32>, Option<u32>), String> {
    let Some(context) = context else {
        return Ok((None, None));
    };
    Ok((
        context
            .run_as_user
            .map(|v| id(v, "runAsUser"))
            .transpose()?,
        context
            .run_as_group
            .map(|v| id(v, "runAsGroup"))
            .transpose()?,
    ))
}

fn image_user(image_user: Option<&str>) -> Option<&str> {
    image_user.filter(|u| !u.is_empty())
}

/// A workload container's user, as kubelet and containerd build it: kubelet passes the
/// effective `runAsUser` or the image's user (only its user part), containerd resolves the
/// primary group through the image's passwd (unless `runAsGroup` is set), then adds the
/// groups that list the user and the pod's `fsGroup` and `supplementalGroups`.
pub(crate) fn workload_user(
    image_user_field: Option<&str>,
    accounts: &Accounts,
    pod: &PodUser,
    container: (Option<u32>, Option<u32>),
) -> Result<User, String> {
    let run_as_user = container.0.or(pod.run_as_user);
    let run_as_group = container.1.or(pod.run_as_group);
    let (uid, named_gid) = match run_as_user {
        Some(uid) => (uid, None),
        None => match image_user(image_user_field) {
            None => (0, None),
            Some(user) => {
                let user_part = user.split(':').next().unwrap_or_default();
                if user.split(':').count() > 2 {
                    return Err(format!("the image's user \"{user}\" is not user[:group]"));
                }
                if user_part.is_empty() {
                    (0, None)
                } else {
                    accounts.resolve_user(user_part)?
                }
            }
        },
    };
    let gid = run_as_group
        .or_else(|| accounts.by_uid(uid).map(|e| e.gid))
        .or(named_gid)
        .unwrap_or(0);
    let mut additional: BTreeSet<u32> = BTreeSet::from([gid]);
    if !pod.strict_supplemental_groups {
        additional.extend(accounts.member_groups(uid));
    }
    additional.extend(pod.pod_groups());
    Ok(User {
        uid,
        gid,
        additional_gids: additional,
        username: String::new(),
    })
}

/// The pause container's user: containerd applies the pause image's full `User` (including
/// its group), which the pod's `runAsUser`/`runAsGroup` override; a resolved user replaces the
/// pod's extra groups with its primary group.
pub(crate) fn pause_user(
    image_user_field: Option<&str>,
    accounts: &Accounts,
    pod: &PodUser,
) -> Result<User, String> {
    let mut user = User::default();
    let image_user = image_user(image_user_field);
    if let Some(full) = image_user {
        let parts: Vec<&str> = full.split(':').collect();
        let (user_part, group_part) = match parts.as_slice() {
            [u] => (*u, None),
            [u, g] => (*u, Some(*g)),
            _ => return Err(format!("the image's user \"{full}\" is not user[:group]")),
        };
        let (uid, _) = if user_part.is_empty() {
            (0, None)
        } else {
            accounts.resolve_user(user_part)?
        };
        user.uid = uid;
        let gid = group_part
            .filter(|g| !g.is_empty())
            .and_then(|g| g.parse::<u32>().ok().or_else(|| accounts.group_by_name(g)))
            .or_else(|| accounts.by_uid(uid).map(|e| e.gid));
        if let Some(gid) = gid {
            user.gid = gid;
            user.additional_gids.insert(gid);
        }
    }
    let mut resolve_gid_from_passwd = false;
    if let Some(uid) = pod.run_as_user {
        user.uid = uid;
        resolve_gid_from_passwd = true;
    }
    if let Some(gid) = pod.run_as_group {
        user.gid = gid;
        user.additional_gids = BTreeSet::from([gid]);
        resolve_gid_from_passwd = false;
    }
    if resolve_gid_from_passwd {
        user.gid = accounts.by_uid(user.uid).map(|e| e.gid).unwrap_or(0);
        user.additional_gids = BTreeSet::from([user.gid]);
    }
    let user_overridden = pod.run_as_user.is_some() || pod.run_as_group.is_some();
    if image_user.is_none() && !user_overridden {
        user.additional_gids.extend(pod.pod_groups());
    }
    user.additional_gids
        .extend(accounts.member_groups(user.uid));
    Ok(user)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    const GID_PASSWD: &str = "name:x:2:1::/home/name:/usr/sbin/nologin\n";
    const GID_GROUP: &str = "daemon:x:1:\nname:x:2:name\n";

    fn gids(user: &User) -> Vec<u32> {
        user.additional_gids.iter().copied().collect()
    }

    #[test]
    fn named_image_user_resolves_through_passwd_and_skips_own_group() {
        let accounts = Accounts::parse(Some(GID_PASSWD), Some(GID_GROUP)).unwrap();
        let user =
            workload_user(Some("name"), &accounts, &PodUser::default(), (None, None)).unwrap();
        assert_eq!((user.uid, user.gid, gids(&user)), (2, 1, vec![1]));
    }

    #[test]
    fn member_groups_are_added() {
        let accounts = Accounts::parse(
            Some("root:x:0:0:root:/root:/bin/sh\n"),
            Some("root:x:0:\nwheel:x:10:root\nstaff:x:50:other\n"),
        )
        .unwrap();
        let user = workload_user(None, &accounts, &PodUser::default(), (None, None)).unwrap();
        assert_eq!((user.uid, user.gid, gids(&user)), (0, 0, vec![0, 10]));
        let strict = PodUser {
            strict_supplemental_groups: true,
            ..PodUser::default()
        };
        let user = workload_user(None, &accounts, &strict, (None, None)).unwrap();
        assert_eq!(gids(&user), vec![0]);
    }

    #[test]
    fn run_as_user_overrides_image_and_looks_up_gid() {
        let accounts = Accounts::parse(
            Some("redis:x:1000:1000::/:/sbin/nologin\nnobody:x:65534:65534::/:/sbin/nologin\n"),
            None,
        )
        .unwrap();
        let pod = PodUser {
            run_as_user: Some(65534),
            fs_group: Some(65533),
            supplemental_groups: vec![65532],
            ..PodUser::default()
        };
        let user = workload_user(Some("1000"), &accounts, &pod, (None, None)).unwrap();
        assert_eq!(
            (user.uid, user.gid, gids(&user)),
            (65534, 65534, vec![65532, 65533, 65534])
        );
        // The container's runAsGroup wins over passwd.
        let user = workload_user(Some("1000"), &accounts, &pod, (None, Some(7))).unwrap();
        assert_eq!((user.uid, user.gid), (65534, 7));
        // Unknown UID without passwd entry: GID 0.
        let user = workload_user(None, &accounts, &PodUser::default(), (Some(42), None)).unwrap();
        assert_eq!((user.uid, user.gid, gids(&user)), (42, 0, vec![0]));
    }

    #[test]
    fn workload_drops_the_image_group_part() {
        let user = workload_user(
            Some("65535:65535"),
            &Accounts::default(),
            &PodUser::default(),
            (None, None),
        )
        .unwrap();
        assert_eq!((user.uid, user.gid, gids(&user)), (65535, 0, vec![0]));
    }

    #[test]
    fn pause_keeps_the_image_group_part() {
        let user = pause_user(
            Some("65535:65535"),
            &Accounts::default(),
            &PodUser::default(),
        )
        .unwrap();
        assert_eq!(
            (user.uid, user.gid, gids(&user)),
            (65535, 65535, vec![65535])
        );
        // fsGroup does not reach a pause container whose image sets a user...
        let pod = PodUser {
            fs_group: Some(1000),
            ..PodUser::default()
        };
        let user = pause_user(Some("65535:65535"), &Accounts::default(), &pod).unwrap();
        assert_eq!(gids(&user), vec![65535]);
        // ...but does when neither the image nor the pod set one.
        let user = pause_user(None, &Accounts::default(), &pod).unwrap();
        assert_eq!((user.uid, user.gid, gids(&user)), (0, 0, vec![1000]));
        // The pod's runAsUser/runAsGroup override the image.
        let pod = PodUser {
            run_as_user: Some(65534),
            run_as_group: Some(65534),
            ..PodUser::default()
        };
        let user = pause_user(Some("65535:65535"), &Accounts::default(), &pod).unwrap();
        assert_eq!(
            (user.uid, user.gid, gids(&user)),
            (65534, 65534, vec![65534])
        );
        let pod = PodUser {
            run_as_user: Some(12),
            ..PodUser::default()
        };
        let user = pause_user(Some("65535:65535"), &Accounts::default(), &pod).unwrap();
        assert_eq!((user.uid, user.gid, gids(&user)), (12, 0, vec![0]));
    }

    #[test]
    fn unresolvable_names_and_bad_files_are_errors() {
        let accounts = Accounts::parse(Some(GID_PASSWD), Some(GID_GROUP)).unwrap();
        let err = workload_user(Some("nobody"), &accounts, &PodUser::default(), (None, None))
            .unwrap_err();
        assert!(
            err.contains("\"nobody\" is not in its /etc/passwd"),
            "{err}"
        );
        let err = workload_user(
            Some("app"),
            &Accounts::default(),
            &PodUser::default(),
            (None, None),
        )
        .unwrap_err();
        assert!(err.contains("no passwd"), "{err}");
        let err =
            workload_user(Some("a:b:c"), &accounts, &PodUser::default(), (None, None)).unwrap_err();
        assert!(err.contains("not user[:group]"), "{err}");
        let err = Accounts::parse(Some("root:x:0:0\n"), None).unwrap_err();
        assert!(err.contains("line 1: expected 7 fields"), "{err}");
        let err = Accounts::parse(None, Some("\n# comment\nwheel:x:ten:\n")).unwrap_err();
        assert!(err.contains("line 3: GID \"ten\""), "{err}");
    }

    #[test]
    fn out_of_range_ids_are_errors() {
        let context = PodSecurityContext {
            run_as_user: Some(-1),
            ..PodSecurityContext::default()
        };
        let err = PodUser::from_context(Some(&context)).unwrap_err();
        assert!(err.contains("runAsUser -1"), "{err}");
        let context = SecurityContext {
            run_as_group: Some(1 << 40),
            ..SecurityContext::default()
        };
        assert!(container_ids(Some(&context)).is_err());
    }
}
