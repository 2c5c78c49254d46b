//! The ways of carrying Docker's images into the new runtime, each behind one interface and
//! tried in order on what the ways before it declined: share by digest from Docker's own
//! containerd namespace, link Docker's overlay2 layers, stream Docker's export (with `ctr
//! images import` behind it), and skopeo into CRI-O's storage. Each image keeps why each way
//! before the one that carried it declined (`CarriedImage::fallback`).

use super::*;

/// What the ways work with.
pub struct Cx<'a> {
    pub opts: &'a CarryOptions,
    /// containerd, where the images go there.
    pub ctr: Option<&'a Ctr>,
    /// containerd's API, when it answered.
    pub client: Option<&'a containerd::Containerd>,
    /// Docker's /info, when it answered.
    pub info: Option<&'a docker::Info>,
    pub bar: Option<&'a ProgressBar>,
}

/// What became of one image in one way.
pub enum Attempt {
    /// CarriedImage, there already, or failed for good (no way after this one would do better).
    Done(CarriedImage),
    /// Not carried by this way, and why: the next way tries.
    Declined(Selected, String),
}

/// One way of carrying images.
pub trait Way: Sync {
    fn name(&self) -> &'static str;
    /// Whether this way is one for this node at all (sharing needs Docker on the very
    /// containerd the images go to; linking needs Docker's own layer store): a way that does
    /// not apply is passed over without a word.
    fn applies(&self, _cx: &Cx) -> bool {
        true
    }
    fn carry(&self, cx: &Cx, images: Vec<Selected>) -> Vec<Attempt>;
}

/// Each way in turn, on what the ways before it declined. An image every way declined fails,
/// with every reason.
pub fn through(ways: &[&dyn Way], cx: &Cx, mut need: Vec<Selected>) -> Vec<CarriedImage> {
    let mut out = Vec::new();
    let mut why: std::collections::HashMap<String, Vec<String>> = Default::default();
    for way in ways {
        if need.is_empty() {
            break;
        }
        if !way.applies(cx) {
            continue;
        }
        let mut next = Vec::new();
        for a in way.carry(cx, std::mem::take(&mut need)) {
            match a {
                Attempt::Done(mut c) => {
                    if let Some(r) = why.get(&c.id) {
                        c.fallback = Some(r.join("; "));
                    }
                    out.push(c);
                }
                Attempt::Declined(s, r) => {
                    why.entry(s.image.id.clone()).or_default().push(r);
                    next.push(s);
                }
            }
        }
        need = next;
    }
    for Selected { image, in_use } in need {
        let mut c = CarriedImage::new(&image, names_of(&image), in_use, None);
        let r = why.remove(&image.id).unwrap_or_default();
        c.fail(anyhow::anyhow!("no way could carry it: {}", r.join("; ")));
        out.push(c);
    }
    out
}

fn declined_all(images: Vec<Selected>, why: &str) -> Vec<Attempt> {
    images
        .into_iter()
        .map(|s| Attempt::Declined(s, why.to_string()))
        .collect()
}

/// The images asked for, by their ids.
fn by_id(need: &[Selected]) -> std::collections::HashMap<String, Selected> {
    need.iter()
        .map(|s| (s.image.id.clone(), s.clone()))
        .collect()
}

// The ways, in the order they are tried: to containerd, sharing, then linking, then Docker's
// export; to CRI-O, skopeo.

/// Docker keeps its images in the containerd the images go to: shared from its namespace into
/// k8s.io by digest, no export; only the snapshots are unpacked.
pub struct Share;

/// Docker's own overlay2 store beside containerd's overlayfs snapshots: each image's layers
/// hard-linked into snapshots (link.rs), nothing copied.
pub struct Link;

/// Docker's export streamed into containerd (import.rs; `ctr images import` where that
/// fails): all the images in one stream first, then one by one what the batch did not bring.
/// The last way to containerd: what fails here fails.
pub struct DockerSave;

/// CRI-O: each image exported from Docker into a file and copied into containers-storage with
/// skopeo.
pub struct Skopeo;

impl Share {
    fn namespace(cx: &Cx) -> Option<String> {
        shared_store(cx.info, cx.ctr?)
    }
}

impl Way for Share {
    fn name(&self) -> &'static str {
        "containerd-share"
    }

    fn applies(&self, cx: &Cx) -> bool {
        Share::namespace(cx).is_some()
    }

    fn carry(&self, cx: &Cx, need: Vec<Selected>) -> Vec<Attempt> {
        let (Some(namespace), Some(ctr)) = (Share::namespace(cx), cx.ctr) else {
            return declined_all(need, "Docker does not keep its images in this containerd");
        };
        // Room first: sharing writes only the unpacked snapshots.
        let bytes: u64 = need.iter().map(|Selected { image: i, .. }| i.size).sum();
        if let Err(why) = room::check(&[(cx.opts.store.clone(), bytes)]) {
            return declined_all(need, &why);
        }
        let connected;
        let client = match cx.client {
            Some(c) => c,
            None => match containerd::Containerd::connect(Path::new(&ctr.address)) {
                Ok(c) => {
                    connected = c;
                    &connected
                }
                Err(e) => return declined_all(need, &format!("containerd's API: {e:#}")),
            },
        };
        let bar = cx.bar;
        let by_id = by_id(&need);
        in_parallel(need.into(), cx.opts.parallel, &|image, in_use| {
            let t0 = Instant::now();
            let mut c = CarriedImage::new(image, names_of(image), in_use, Some(self.name()));
            if let Err(e) = share(client, &namespace, ctr, image) {
                c.fail(e);
            }
            c.duration_ms = t0.elapsed().as_millis() as u64;
            if let (Some(b), CarryResult::Imported) = (bar, &c.result) {
                b.inc(image.size);
            }
            c
        })
        .into_iter()
        .map(|c| match c.result {
            CarryResult::Failed => Attempt::Declined(
                by_id[&c.id].clone(),
                format!(
                    "sharing from Docker's containerd namespace: {}",
                    c.error.unwrap_or_default()
                ),
            ),
            _ => Attempt::Done(c),
        })
        .collect()
    }
}

impl Way for Link {
    fn name(&self) -> &'static str {
        "linked"
    }

    fn applies(&self, cx: &Cx) -> bool {
        cx.ctr.is_some() && Share::namespace(cx).is_none()
    }

    fn carry(&self, cx: &Cx, need: Vec<Selected>) -> Vec<Attempt> {
        let Some(ctr) = cx.ctr else {
            return declined_all(need, "not to containerd");
        };
        let by_id = by_id(&need);
        link_all(cx.opts, ctr, cx.client, cx.info, &need, cx.bar)
            .into_iter()
            .map(|r| match r {
                Ok(c) => Attempt::Done(c),
                Err((id, why)) => Attempt::Declined(by_id[&id].clone(), why),
            })
            .collect()
    }
}

impl Way for DockerSave {
    fn name(&self) -> &'static str {
        "docker-save"
    }

    fn applies(&self, cx: &Cx) -> bool {
        cx.ctr.is_some()
    }

    fn carry(&self, cx: &Cx, need: Vec<Selected>) -> Vec<Attempt> {
        let Some(ctr) = cx.ctr else {
            return declined_all(need, "not to containerd");
        };
        let opts = cx.opts;
        // Room for what is copied: the content and the unpacked snapshots of the layers
        // containerd does not have yet, each once. A copy that does not fit is refused before
        // it starts.
        let bytes = copy_need(ctr, cx.client, cx.info, &need);
        if let Err(why) = room::check(&[(opts.store.clone(), bytes)]) {
            return refused(&need, None, &why)
                .into_iter()
                .map(Attempt::Done)
                .collect();
        }
        // One stream for all of them first: Docker writes a layer that several images share
        // once, where one export per image would send it again for each.
        let t0 = Instant::now();
        let refs: Vec<&Image> = need.iter().map(|Selected { image: i, .. }| i).collect();
        let batch = import(opts, ctr, &refs, cx.bar);
        let now = ctr.names().unwrap_or_default();
        let ms = t0.elapsed().as_millis() as u64;
        let mut out = Vec::new();
        let mut retry: VecDeque<Selected> = VecDeque::new();
        for Selected { image, in_use } in need {
            let names = names_of(&image);
            if let (Ok(via), true) = (&batch, names.iter().all(|n| now.contains(n))) {
                let mut c = CarriedImage::new(&image, names, in_use, Some(via));
                c.duration_ms = ms;
                out.push(Attempt::Done(c));
            } else {
                retry.push_back(Selected { image, in_use });
            }
        }
        // What the batch did not bring (one broken image fails its whole stream): one image
        // at a time, in parallel, so that one failure does not stop the others.
        out.extend(
            in_parallel(retry, opts.parallel, &|image, in_use| {
                carry_one(opts, ctr, image, in_use)
            })
            .into_iter()
            .map(Attempt::Done),
        );
        out
    }
}

impl Way for Skopeo {
    fn name(&self) -> &'static str {
        "skopeo"
    }

    fn carry(&self, cx: &Cx, images: Vec<Selected>) -> Vec<Attempt> {
        let opts = cx.opts;
        // Each image in the store, and the largest export at a time (or `parallel` of them)
        // under the spool directory. Images already in the store count too: a conservative
        // bound, since telling which are there takes a skopeo call per image.
        let store: u64 = images.iter().map(|Selected { image: i, .. }| i.size).sum();
        let mut sizes: Vec<u64> = images
            .iter()
            .map(|Selected { image: i, .. }| i.size)
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let spool: u64 = sizes.iter().take(opts.parallel.max(1)).sum();
        let done = if let Err(why) =
            room::check(&[(opts.store.clone(), store), (opts.spool.clone(), spool)])
        {
            refused(&images, Some(self.name()), &why)
        } else {
            in_parallel(images.into(), opts.parallel, &|image, in_use| {
                to_storage(&opts.docker_socket, image, in_use, cx.bar)
            })
        };
        done.into_iter().map(Attempt::Done).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str) -> Selected {
        Selected {
            image: Image {
                id: id.into(),
                repo_tags: Some(vec![format!("example.org/{id}:1")]),
                repo_digests: None,
                size: 10,
                descriptor: None,
            },
            in_use: true,
        }
    }

    /// A way that carries the images whose id is in `takes` and declines the others.
    struct Takes(&'static str, &'static [&'static str], bool);

    impl Way for Takes {
        fn name(&self) -> &'static str {
            self.0
        }
        fn applies(&self, _: &Cx) -> bool {
            self.2
        }
        fn carry(&self, _: &Cx, images: Vec<Selected>) -> Vec<Attempt> {
            images
                .into_iter()
                .map(|s| {
                    if self.1.contains(&s.image.id.as_str()) {
                        let names = names_of(&s.image);
                        Attempt::Done(CarriedImage::new(&s.image, names, s.in_use, Some(self.0)))
                    } else {
                        Attempt::Declined(s, format!("{} declined", self.0))
                    }
                })
                .collect()
        }
    }

    #[test]
    fn each_way_gets_what_the_ways_before_it_declined_and_each_image_keeps_why() {
        let opts = CarryOptions {
            docker_socket: "/nonexistent".into(),
            store: "/".into(),
            spool: "/".into(),
            dest: Dest::ContainersStorage,
            selection: Selection::All,
            in_use_refs: vec![],
            parallel: 1,
            show: Show::Quiet,
            no_link: None,
        };
        let cx = Cx {
            opts: &opts,
            ctr: None,
            client: None,
            info: None,
            bar: None,
        };
        let first = Takes("first", &["a"], true);
        let skipped = Takes("skipped", &["b", "c"], false);
        let second = Takes("second", &["b"], true);
        let mut out = through(
            &[&first, &skipped, &second],
            &cx,
            vec![image("a"), image("b"), image("c")],
        );
        out.sort_by(|x, y| x.id.cmp(&y.id));
        let got: Vec<(&str, Option<&str>, Option<&str>, &CarryResult)> = out
            .iter()
            .map(|c| (c.id.as_str(), c.via, c.fallback.as_deref(), &c.result))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Some("first"), None, &CarryResult::Imported),
                (
                    "b",
                    Some("second"),
                    Some("first declined"),
                    &CarryResult::Imported
                ),
                ("c", None, None, &CarryResult::Failed),
            ]
        );
        // Declined by every way that applies: failed with every reason; the way that does not
        // apply said nothing.
        assert_eq!(
            out[2].error.as_deref(),
            Some("no way could carry it: first declined; second declined")
        );
    }
}
