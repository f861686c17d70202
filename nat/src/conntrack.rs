//! The connection-tracking table: a bounded set of flows, each known by its tuple in
//! both directions, with its state, timeout deadline and per-direction counters, and
//! the TCP state machine and timeouts of Linux's conntrack (`nf_conntrack_proto_tcp`,
//! its defaults in `/proc/sys/net/netfilter/`). This module owns the flow lifecycle:
//! creation (at the limit, an unassured flow evicted as Linux's `early_drop` does, else
//! refused; both counted), state changes, expiry and flush.
//! It knows nothing of NAT beyond storing the reply tuple the NAT engine chose.
//!
//! Time is passed in as milliseconds (`now`) and never read from a clock. Timeouts are
//! in seconds, as Linux's sysctls are.

use std::collections::HashMap;

use crate::packet::tcp_flags;
use crate::tuple::{Kind, Tuple};

/// The default flow limit (`vsctl set-ct-limit` changes it).
pub const DEFAULT_LIMIT: usize = 262_144;
/// Slots a full table looks at for a flow to evict before refusing a new one: bounded
/// work per packet, as Linux's `early_drop` scans a bounded stretch of its hash chains.
pub const EARLY_DROP_SCAN: usize = 64;

/// Linux's default conntrack timeouts, in seconds.
pub mod timeout {
    /// `nf_conntrack_tcp_timeout_syn_sent`.
    pub const TCP_SYN_SENT: u64 = 120;
    /// SYN_SENT2 (simultaneous open): Linux's built-in value, it has no sysctl.
    pub const TCP_SYN_SENT2: u64 = 120;
    /// `nf_conntrack_tcp_timeout_syn_recv`.
    pub const TCP_SYN_RECV: u64 = 60;
    /// `nf_conntrack_tcp_timeout_established` (5 days).
    pub const TCP_ESTABLISHED: u64 = 432_000;
    /// `nf_conntrack_tcp_timeout_fin_wait`.
    pub const TCP_FIN_WAIT: u64 = 120;
    /// `nf_conntrack_tcp_timeout_close_wait`.
    pub const TCP_CLOSE_WAIT: u64 = 60;
    /// `nf_conntrack_tcp_timeout_last_ack`.
    pub const TCP_LAST_ACK: u64 = 30;
    /// `nf_conntrack_tcp_timeout_time_wait`.
    pub const TCP_TIME_WAIT: u64 = 120;
    /// `nf_conntrack_tcp_timeout_close`.
    pub const TCP_CLOSE: u64 = 10;
    /// `nf_conntrack_udp_timeout`: no reply seen yet.
    pub const UDP: u64 = 30;
    /// `nf_conntrack_udp_timeout_stream`: replied.
    pub const UDP_REPLIED: u64 = 120;
    /// `nf_conntrack_icmp_timeout`.
    pub const ICMP: u64 = 30;
}

/// Which way a packet travels relative to the flow's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// The direction of the packet that created the flow.
    Original,
    /// The other direction.
    Reply,
}

impl Dir {
    /// 0 for original, 1 for reply (counter index).
    #[inline]
    pub fn index(self) -> usize {
        match self {
            Dir::Original => 0,
            Dir::Reply => 1,
        }
    }
}

/// The TCP states of Linux's conntrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpState {
    /// SYN seen in the original direction.
    SynSent,
    /// SYN-ACK seen in the reply direction (or either way after a simultaneous open).
    SynRecv,
    /// Handshake completed.
    Established,
    /// A FIN seen.
    FinWait,
    /// The FIN acknowledged; the other side may still send.
    CloseWait,
    /// FINs seen both ways; waiting for the last ACK.
    LastAck,
    /// Closed cleanly; lingering for late segments.
    TimeWait,
    /// Reset.
    Close,
    /// A SYN seen from each side (simultaneous open), no SYN-ACK yet.
    SynSent2,
}

impl TcpState {
    /// The name `conntrack -L` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    /// The state's timeout in seconds.
    pub fn timeout(self) -> u64 {
        match self {
            TcpState::SynSent => timeout::TCP_SYN_SENT,
            TcpState::SynRecv => timeout::TCP_SYN_RECV,
            TcpState::Established => timeout::TCP_ESTABLISHED,
            TcpState::FinWait => timeout::TCP_FIN_WAIT,
            TcpState::CloseWait => timeout::TCP_CLOSE_WAIT,
            TcpState::LastAck => timeout::TCP_LAST_ACK,
            TcpState::TimeWait => timeout::TCP_TIME_WAIT,
            TcpState::Close => timeout::TCP_CLOSE,
            TcpState::SynSent2 => timeout::TCP_SYN_SENT2,
        }
    }
}

/// What a TCP segment does to a flow's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpStep {
    /// Move to this state.
    To(TcpState),
    /// Valid, state unchanged (a retransmission, a SYN on an open connection).
    Ignore,
    /// Not a segment this state accepts: drop it, leave the flow alone.
    Invalid,
    /// A SYN from the original side on a flow that is closing or closed: that
    /// connection is over and this is a new one on the same tuple (a client with no
    /// TIME_WAIT, because the server closed first, reusing its port). The flow must end
    /// and the SYN start a new one, with its own NAT and backend choice, as Linux's
    /// conntrack does (`nf_ct_kill` and a fresh lookup).
    Reopen,
}

/// The segment classes the state machine reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    Bad,
}

fn classify(flags: u8) -> Seg {
    let has = |f| flags & f != 0;
    if has(tcp_flags::RST) {
        Seg::Rst
    } else if has(tcp_flags::SYN) {
        match (has(tcp_flags::FIN), has(tcp_flags::ACK)) {
            (true, _) => Seg::Bad,
            (false, true) => Seg::SynAck,
            (false, false) => Seg::Syn,
        }
    } else if has(tcp_flags::FIN) {
        Seg::Fin
    } else if has(tcp_flags::ACK) {
        Seg::Ack
    } else {
        Seg::Bad
    }
}

/// The transition for a segment with `flags` travelling `dir` on a flow in `state`
/// (`None`: no flow yet — only a plain SYN may start one). Linux's table without
/// window tracking. Simultaneous open (a SYN from each side, then SYN-ACKs) goes
/// through SYN_SENT2 to SYN_RECV as in Linux, because RFC 5382 REQ-2 wants a NAT to
/// pass every valid TCP sequence, and TCP hole punching relies on this one.
pub fn tcp_step(state: Option<TcpState>, dir: Dir, flags: u8) -> TcpStep {
    use TcpState::*;
    use TcpStep::{Ignore as IG, Invalid as IV, To};
    let seg = classify(flags);
    let Some(s) = state else {
        return if seg == Seg::Syn && dir == Dir::Original {
            To(SynSent)
        } else {
            IV
        };
    };
    match (seg, dir) {
        (Seg::Bad, _) => IV,
        (Seg::Rst, _) => To(Close),
        (Seg::Syn, Dir::Original) => match s {
            FinWait | CloseWait | LastAck | TimeWait | Close => TcpStep::Reopen,
            _ => IG,
        },
        (Seg::Syn, Dir::Reply) => match s {
            SynSent => To(SynSent2),
            SynSent2 => IG,
            _ => IV,
        },
        (Seg::SynAck, Dir::Original) => match s {
            SynSent2 => To(SynRecv),
            SynSent | Close => IV,
            _ => IG,
        },
        (Seg::SynAck, Dir::Reply) => match s {
            SynSent | SynSent2 => To(SynRecv),
            Close => IV,
            _ => IG,
        },
        (Seg::Fin, d) => match s {
            SynSent | SynSent2 => IV,
            SynRecv if d == Dir::Reply => IV,
            SynRecv | Established => To(FinWait),
            FinWait | CloseWait | LastAck => To(LastAck),
            TimeWait => IG,
            Close => IG,
        },
        (Seg::Ack, d) => match s {
            SynSent => IV,
            // The other side acknowledging our SYN before its SYN-ACK: half-open.
            SynSent2 if d == Dir::Reply => IG,
            SynSent2 => IV,
            SynRecv if d == Dir::Original => To(Established),
            SynRecv => IG,
            Established => IG,
            FinWait | CloseWait => To(CloseWait),
            LastAck | TimeWait => To(TimeWait),
            Close => IG,
        },
    }
}

/// A flow's protocol state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// A TCP connection in this state.
    Tcp(TcpState),
    /// A UDP flow.
    Udp,
    /// An ICMP echo flow.
    Icmp,
}

impl State {
    /// The state a flow starts in for its first packet, or `None` if that packet may
    /// not start a flow (TCP other than a plain SYN, an echo reply, an ICMP error).
    pub fn initial(kind: &Kind) -> Option<State> {
        match kind {
            Kind::Tcp { flags } => match tcp_step(None, Dir::Original, *flags) {
                TcpStep::To(s) => Some(State::Tcp(s)),
                _ => None,
            },
            Kind::Udp => Some(State::Udp),
            Kind::Echo { request: true } => Some(State::Icmp),
            Kind::Echo { request: false } | Kind::Error { .. } => None,
        }
    }

    /// The TCP state's name, or `None` for UDP and ICMP (which have no named state).
    pub fn name(&self) -> Option<&'static str> {
        match self {
            State::Tcp(s) => Some(s.as_str()),
            State::Udp | State::Icmp => None,
        }
    }
}

/// Packets and bytes in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets.
    pub packets: u64,
    /// Bytes (IP total length).
    pub bytes: u64,
}

/// A tracked flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The tuple of the first packet, as it arrived.
    pub orig: Tuple,
    /// The tuple replies are expected to arrive with (after NAT, the translated one).
    pub reply: Tuple,
    /// The protocol state.
    pub state: State,
    /// True once a packet went the reply way.
    pub seen_reply: bool,
    /// True once the flow is established (TCP) or replied (UDP, ICMP), as Linux's
    /// `[ASSURED]`.
    pub assured: bool,
    /// When the flow expires, in ms.
    pub deadline: u64,
    /// Counters, original direction first.
    pub counters: [Counters; 2],
    /// Who made the flow (as Linux's `ctmark`): a service backend's id
    /// ([`crate::lb`]), or 0.
    pub mark: u32,
}

impl Entry {
    /// The tuple a packet going `dir` arrives with.
    pub fn tuple(&self, dir: Dir) -> Tuple {
        match dir {
            Dir::Original => self.orig,
            Dir::Reply => self.reply,
        }
    }

    /// The tuple a packet going `dir` leaves with once translated: the reverse of the
    /// other direction's arrival tuple.
    pub fn translated(&self, dir: Dir) -> Tuple {
        match dir {
            Dir::Original => self.reply.reverse(),
            Dir::Reply => self.orig.reverse(),
        }
    }

    /// True if the flow's deadline has passed at `now` (ms).
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.deadline
    }

    /// Whole seconds left before expiry at `now` (ms), as `conntrack -L` shows.
    pub fn timeout_left(&self, now: u64) -> u64 {
        self.deadline.saturating_sub(now) / 1000
    }

    /// The current timeout in seconds for the flow's state.
    fn timeout(&self) -> u64 {
        match self.state {
            State::Tcp(s) => s.timeout(),
            State::Udp if self.seen_reply => timeout::UDP_REPLIED,
            State::Udp => timeout::UDP,
            State::Icmp => timeout::ICMP,
        }
    }
}

/// A handle on a flow, valid until the flow is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowId(u32);

/// Why a flow could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// The table holds its limit of flows.
    #[error("conntrack table full")]
    Full,
    /// Another flow already has one of the tuples (or the two are the same).
    #[error("tuple already tracked")]
    Exists,
}

/// A packet the flow's state machine refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid packet for the flow's state")]
pub struct Invalid;

/// The flow table.
#[derive(Debug, Clone)]
pub struct Table {
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    index: HashMap<Tuple, (u32, Dir)>,
    limit: usize,
    len: usize,
    refused: u64,
    cursor: usize,
    /// Flows evicted to make room for a new one ([`Table::insert_evicting`]).
    evicted: u64,
    /// Where the next eviction scan starts (apart from the expiry sweep's cursor, so
    /// that neither skips what the other has not looked at).
    evict_cursor: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table::new(DEFAULT_LIMIT)
    }
}

/// Milliseconds from seconds, saturating.
#[inline]
fn ms(secs: u64) -> u64 {
    secs.saturating_mul(1000)
}

impl Table {
    /// An empty table holding at most `limit` flows (memory grows with use, not limit).
    pub fn new(limit: usize) -> Table {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            limit: limit.min(u32::MAX as usize),
            len: 0,
            refused: 0,
            cursor: 0,
            evicted: 0,
            evict_cursor: 0,
        }
    }

    /// The flow limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the limit; flows beyond a lowered limit stay until they end.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(u32::MAX as usize);
    }

    /// Flows tracked.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// New flows refused because the table was full, since creation.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Flows evicted to make room for new ones, since creation.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The flow a packet with tuple `t` belongs to, and its direction (expired flows
    /// included: the caller decides, see [`Entry::is_expired`]).
    #[inline]
    pub fn lookup(&self, t: &Tuple) -> Option<(FlowId, Dir)> {
        self.index.get(t).map(|&(i, d)| (FlowId(i), d))
    }

    /// The flow `id`.
    #[inline]
    pub fn get(&self, id: FlowId) -> Option<&Entry> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    /// Starts a flow whose first packet arrived with `orig` and whose replies will
    /// arrive with `reply`, in `state`, counting that packet (`bytes` long) at `now`.
    pub fn insert(
        &mut self,
        orig: Tuple,
        reply: Tuple,
        state: State,
        bytes: usize,
        now: u64,
    ) -> Result<FlowId, InsertError> {
        if self.taken(&orig, &reply) {
            return Err(InsertError::Exists);
        }
        self.place(orig, reply, state, bytes, now)
    }

    /// Whether a flow with these tuples cannot be started: they are one, or either is
    /// some flow's already.
    fn taken(&self, orig: &Tuple, reply: &Tuple) -> bool {
        orig == reply || self.index.contains_key(orig) || self.index.contains_key(reply)
    }

    /// [`Table::insert`] once the tuples are known to be free: refused at the limit.
    fn place(
        &mut self,
        orig: Tuple,
        reply: Tuple,
        state: State,
        bytes: usize,
        now: u64,
    ) -> Result<FlowId, InsertError> {
        if self.len >= self.limit {
            self.refused += 1;
            return Err(InsertError::Full);
        }
        let mut e = Entry {
            orig,
            reply,
            state,
            seen_reply: false,
            assured: false,
            deadline: 0,
            counters: [
                Counters {
                    packets: 1,
                    bytes: bytes as u64,
                },
                Counters::default(),
            ],
            mark: 0,
        };
        e.deadline = now.saturating_add(ms(e.timeout()));
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = Some(e);
                }
                i
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(orig, (i, Dir::Original));
        self.index.insert(reply, (i, Dir::Reply));
        self.len += 1;
        Ok(FlowId(i))
    }

    /// [`Table::insert`], but a table exactly at its limit first evicts one flow that is
    /// not [assured](Entry::assured) (or has expired), handing it to `gone`, as Linux's
    /// `early_drop` does: otherwise half-open flows (spoofed SYNs to a published port,
    /// 60-120 s each) would fill the table and refuse every container's new connection,
    /// while an assured flow, which has carried traffic both ways, is never sacrificed
    /// to a new one. A table above a lowered limit evicts nothing: its flows stay until
    /// they end, and new ones are refused meanwhile.
    pub fn insert_evicting(
        &mut self,
        orig: Tuple,
        reply: Tuple,
        state: State,
        bytes: usize,
        now: u64,
        gone: impl FnOnce(Entry),
    ) -> Result<FlowId, InsertError> {
        if self.taken(&orig, &reply) {
            return Err(InsertError::Exists);
        }
        if self.len == self.limit {
            if let Some(e) = self.early_drop(now) {
                self.evicted += 1;
                gone(e);
            }
        }
        self.place(orig, reply, state, bytes, now)
    }

    /// Removes the best flow to evict among the next [`EARLY_DROP_SCAN`] slots: an
    /// expired one, else the unassured one closest to its deadline (the least likely to
    /// be answered still: a SYN_RECV or unanswered UDP flow near its end). `None` if every
    /// slot looked at holds an assured, live flow.
    fn early_drop(&mut self, now: u64) -> Option<Entry> {
        let slots = self.slots.len();
        let mut best: Option<(bool, u64, usize)> = None;
        for _ in 0..EARLY_DROP_SCAN.min(slots) {
            if self.evict_cursor >= slots {
                self.evict_cursor = 0;
            }
            let i = self.evict_cursor;
            self.evict_cursor += 1;
            let Some(e) = self.slots.get(i).and_then(Option::as_ref) else {
                continue;
            };
            let expired = e.is_expired(now);
            if !expired && e.assured {
                continue;
            }
            // Expired first, then the earliest deadline.
            let key = (!expired, e.deadline, i);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
            if expired {
                break;
            }
        }
        let (_, _, i) = best?;
        self.remove(FlowId(i as u32))
    }

    /// Removes every flow `pred` selects, handing each to `gone`; returns how many.
    /// Walks the whole table: for reconfiguration, not for packets.
    pub fn remove_if(
        &mut self,
        mut pred: impl FnMut(&Entry) -> bool,
        mut gone: impl FnMut(Entry),
    ) -> usize {
        let mut n = 0;
        for i in 0..self.slots.len() {
            if self
                .slots
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(&mut pred)
            {
                if let Some(e) = self.remove(FlowId(i as u32)) {
                    gone(e);
                    n += 1;
                }
            }
        }
        n
    }

    /// Sets the mark of flow `id`.
    pub fn set_mark(&mut self, id: FlowId, mark: u32) {
        if let Some(Some(e)) = self.slots.get_mut(id.0 as usize) {
            e.mark = mark;
        }
    }

    /// Removes flow `id` and returns it.
    pub fn remove(&mut self, id: FlowId) -> Option<Entry> {
        let e = self.slots.get_mut(id.0 as usize)?.take()?;
        self.index.remove(&e.orig);
        self.index.remove(&e.reply);
        self.free.push(id.0);
        self.len -= 1;
        Some(e)
    }

    /// True if a packet of `kind` travelling `dir` ends flow `id` and starts a new
    /// connection on the same tuple ([`TcpStep::Reopen`]): the caller removes the flow
    /// and creates a new one for the packet instead of tracking it.
    pub fn reopens(&self, id: FlowId, dir: Dir, kind: &Kind) -> bool {
        match (self.get(id).map(|e| e.state), kind) {
            (Some(State::Tcp(s)), Kind::Tcp { flags }) => {
                tcp_step(Some(s), dir, *flags) == TcpStep::Reopen
            }
            _ => false,
        }
    }

    /// Accounts a packet of `kind`, `bytes` long, travelling `dir` on flow `id` at `now`:
    /// steps the state machine, refreshes the deadline, counts it. An invalid packet
    /// changes nothing, nor does one that [reopens](Table::reopens) the flow.
    pub fn track(
        &mut self,
        id: FlowId,
        dir: Dir,
        kind: &Kind,
        bytes: usize,
        now: u64,
    ) -> Result<(), Invalid> {
        let e = self
            .slots
            .get_mut(id.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(Invalid)?;
        match (e.state, kind) {
            (State::Tcp(s), Kind::Tcp { flags }) => match tcp_step(Some(s), dir, *flags) {
                TcpStep::To(n) => {
                    e.state = State::Tcp(n);
                    if n == TcpState::Established {
                        e.assured = true;
                    }
                }
                TcpStep::Ignore => {}
                // Not a packet of this flow: see [`Table::reopens`].
                TcpStep::Invalid | TcpStep::Reopen => return Err(Invalid),
            },
            (State::Udp, Kind::Udp) => {
                if dir == Dir::Reply {
                    e.assured = true;
                }
            }
            (State::Icmp, Kind::Echo { request }) => {
                if *request != (dir == Dir::Original) {
                    return Err(Invalid);
                }
                if dir == Dir::Reply {
                    e.assured = true;
                }
            }
            _ => return Err(Invalid),
        }
        if dir == Dir::Reply {
            e.seen_reply = true;
        }
        e.deadline = now.saturating_add(ms(e.timeout()));
        let c = &mut e.counters[dir.index()];
        c.packets += 1;
        c.bytes += bytes as u64;
        Ok(())
    }

    /// Counts a packet that belongs to flow `id` but does not step its state (an ICMP
    /// error about it), without refreshing its deadline.
    pub fn count(&mut self, id: FlowId, dir: Dir, bytes: usize) {
        if let Some(e) = self.slots.get_mut(id.0 as usize).and_then(Option::as_mut) {
            let c = &mut e.counters[dir.index()];
            c.packets += 1;
            c.bytes += bytes as u64;
        }
    }

    /// Removes the expired flows among the next `budget` slots of a sweep that goes
    /// round the table, handing each to `gone`; returns how many. Bounded work per call.
    pub fn expire_some(&mut self, now: u64, budget: usize, mut gone: impl FnMut(Entry)) -> usize {
        let mut n = 0;
        let slots = self.slots.len();
        for _ in 0..budget.min(slots) {
            if self.cursor >= slots {
                self.cursor = 0;
            }
            let i = self.cursor;
            self.cursor += 1;
            if self
                .slots
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|e| e.is_expired(now))
            {
                if let Some(e) = self.remove(FlowId(i as u32)) {
                    gone(e);
                    n += 1;
                }
            }
        }
        n
    }

    /// Removes every expired flow, handing each to `gone`; returns how many.
    pub fn expire(&mut self, now: u64, gone: impl FnMut(Entry)) -> usize {
        self.cursor = 0;
        let all = self.slots.len();
        self.expire_some(now, all, gone)
    }

    /// Every flow, in no particular order (for `ct-show`).
    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.slots.iter().filter_map(Option::as_ref)
    }

    /// Removes every flow (the refusal counter is kept).
    pub fn flush(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.index.clear();
        self.len = 0;
        self.cursor = 0;
        self.evict_cursor = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tcp_flags::*;
    use crate::tuple::{Endpoint, Proto};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn t(sp: u16) -> Tuple {
        Tuple::new(
            Proto::Tcp,
            Endpoint::new(Ipv4Addr::new(10, 0, 0, 2), sp),
            Endpoint::new(Ipv4Addr::new(192, 0, 2, 1), 80),
        )
    }

    fn tcpk(flags: u8) -> Kind {
        Kind::Tcp { flags }
    }

    fn state(tb: &Table, id: FlowId) -> State {
        tb.get(id).unwrap().state
    }

    const ALL_TCP: [TcpState; 9] = [
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// An established flow for `t(sp)`, opened at time 0.
    fn established(tb: &mut Table, sp: u16) -> FlowId {
        let o = t(sp);
        let id = tb
            .insert(o, o.reverse(), State::Tcp(TcpState::SynSent), 60, 0)
            .unwrap();
        tb.track(id, Dir::Reply, &tcpk(SYN | ACK), 60, 0).unwrap();
        tb.track(id, Dir::Original, &tcpk(ACK), 52, 0).unwrap();
        assert_eq!(state(tb, id), State::Tcp(TcpState::Established));
        id
    }

    /// Steps flow `id` with a segment at `now` and checks the state it lands in and
    /// that its deadline is now that state's Linux timeout away.
    fn step(tb: &mut Table, id: FlowId, d: Dir, flags: u8, now: u64, want: TcpState) {
        tb.track(id, d, &tcpk(flags), 52, now).unwrap();
        let e = tb.get(id).unwrap();
        assert_eq!(e.state, State::Tcp(want), "{flags:#x} going {d:?}");
        assert_eq!(e.deadline, now + want.timeout() * 1000, "{want:?}");
    }

    #[test]
    fn tcp_handshake_and_close() {
        let mut tb = Table::new(10);
        let o = t(1000);
        let id = tb
            .insert(o, o.reverse(), State::initial(&tcpk(SYN)).unwrap(), 60, 0)
            .unwrap();
        assert_eq!(tb.get(id).unwrap().timeout_left(0), 120);
        assert_eq!(tb.lookup(&o.reverse()), Some((id, Dir::Reply)));
        tb.track(id, Dir::Reply, &tcpk(SYN | ACK), 60, 1).unwrap();
        assert_eq!(state(&tb, id), State::Tcp(TcpState::SynRecv));
        assert_eq!(tb.get(id).unwrap().timeout_left(1), 60);
        tb.track(id, Dir::Original, &tcpk(ACK), 52, 2).unwrap();
        assert_eq!(state(&tb, id), State::Tcp(TcpState::Established));
        assert!(tb.get(id).unwrap().assured);
        assert_eq!(tb.get(id).unwrap().timeout_left(2), 432_000);
        tb.track(id, Dir::Original, &tcpk(FIN | ACK), 52, 3)
            .unwrap();
        assert_eq!(state(&tb, id), State::Tcp(TcpState::FinWait));
        tb.track(id, Dir::Reply, &tcpk(ACK), 52, 3).unwrap();
        assert_eq!(state(&tb, id), State::Tcp(TcpState::CloseWait));
        tb.track(id, Dir::Reply, &tcpk(FIN | ACK), 52, 3).unwrap();
        assert_eq!(state(&tb, id), State::Tcp(TcpState::LastAck));
        tb.track(id, Dir::Original, &tcpk(ACK), 52, 3).unwrap();
        assert_eq!(state(&tb, id), State::Tcp(TcpState::TimeWait));
        // A new SYN on the same tuple is a new connection, not a packet of this one:
        // it is not tracked on the flow, which keeps its state and counters.
        assert!(tb.reopens(id, Dir::Original, &tcpk(SYN)));
        assert_eq!(tb.track(id, Dir::Original, &tcpk(SYN), 60, 4), Err(Invalid));
        assert_eq!(state(&tb, id), State::Tcp(TcpState::TimeWait));
        let e = tb.get(id).unwrap();
        assert_eq!(e.counters[0].packets, 4);
        assert_eq!(
            e.counters[1],
            Counters {
                packets: 3,
                bytes: 164
            }
        );
    }

    #[test]
    fn syn_reopens_closing_and_closed_flows_only() {
        use TcpState::*;
        for s in ALL_TCP {
            let closing = matches!(s, FinWait | CloseWait | LastAck | TimeWait | Close);
            // An open connection's retransmitted SYN stays a packet of the flow.
            let want = if closing {
                TcpStep::Reopen
            } else {
                TcpStep::Ignore
            };
            assert_eq!(tcp_step(Some(s), Dir::Original, SYN), want, "{s:?}");
            // Only the original side's plain SYN: a reply SYN, a SYN-ACK or data never
            // reopen.
            for (d, f) in [
                (Dir::Reply, SYN),
                (Dir::Original, SYN | ACK),
                (Dir::Original, ACK),
                (Dir::Original, FIN | ACK),
            ] {
                assert_ne!(
                    tcp_step(Some(s), d, f),
                    TcpStep::Reopen,
                    "{s:?} {d:?} {f:#x}"
                );
            }
        }
        // The server closing first (the client then has no TIME_WAIT): FIN from the
        // reply side, the client's ACK and FIN, the last ACK; a SYN reopens at each step.
        let mut tb = Table::new(10);
        let id = established(&mut tb, 7);
        assert!(!tb.reopens(id, Dir::Original, &tcpk(SYN)));
        for (d, f) in [
            (Dir::Reply, FIN | ACK),
            (Dir::Original, ACK),
            (Dir::Original, FIN | ACK),
            (Dir::Reply, ACK),
        ] {
            tb.track(id, d, &tcpk(f), 52, 1).unwrap();
            assert!(
                tb.reopens(id, Dir::Original, &tcpk(SYN)),
                "{:?}",
                state(&tb, id)
            );
            assert!(!tb.reopens(id, Dir::Reply, &tcpk(SYN)));
        }
        // UDP and ICMP flows never reopen.
        let u = Tuple::new(Proto::Udp, t(8).src, t(8).dst);
        let id = tb.insert(u, u.reverse(), State::Udp, 40, 0).unwrap();
        assert!(!tb.reopens(id, Dir::Original, &Kind::Udp));
    }

    #[test]
    fn linux_default_tcp_timeouts_and_names() {
        // /proc/sys/net/netfilter/nf_conntrack_tcp_timeout_* on a stock kernel, and
        // SYN_SENT2's built-in 2 minutes.
        let linux = [
            (TcpState::SynSent, 120, "SYN_SENT"),
            (TcpState::SynRecv, 60, "SYN_RECV"),
            (TcpState::Established, 432_000, "ESTABLISHED"),
            (TcpState::FinWait, 120, "FIN_WAIT"),
            (TcpState::CloseWait, 60, "CLOSE_WAIT"),
            (TcpState::LastAck, 30, "LAST_ACK"),
            (TcpState::TimeWait, 120, "TIME_WAIT"),
            (TcpState::Close, 10, "CLOSE"),
            (TcpState::SynSent2, 120, "SYN_SENT2"),
        ];
        assert_eq!(linux.len(), ALL_TCP.len());
        for (s, secs, name) in linux {
            assert_eq!((s.timeout(), s.as_str()), (secs, name));
            assert_eq!(State::Tcp(s).name(), Some(name));
        }
        // Each state's timeout is what the flow gets once it is entered.
        let mut tb = Table::new(10);
        let id = established(&mut tb, 1);
        assert_eq!(tb.get(id).unwrap().deadline, 432_000_000);
        step(&mut tb, id, Dir::Original, FIN | ACK, 5, TcpState::FinWait);
        step(&mut tb, id, Dir::Reply, ACK, 6, TcpState::CloseWait);
        step(&mut tb, id, Dir::Reply, FIN | ACK, 7, TcpState::LastAck);
        step(&mut tb, id, Dir::Original, ACK, 8, TcpState::TimeWait);
        // A retransmitted last ACK keeps TIME_WAIT and restarts its clock, as Linux.
        step(&mut tb, id, Dir::Original, ACK, 9, TcpState::TimeWait);
        assert_eq!(tb.expire(9 + 119_999, |_| {}), 0);
        assert_eq!(tb.expire(9 + 120_000, |_| {}), 1);
    }

    #[test]
    fn tcp_fin_from_the_reply_side_first() {
        let mut tb = Table::new(10);
        let id = established(&mut tb, 2);
        step(&mut tb, id, Dir::Reply, FIN | ACK, 1, TcpState::FinWait);
        step(&mut tb, id, Dir::Original, ACK, 2, TcpState::CloseWait);
        // Data still flows from the side that has not closed.
        step(
            &mut tb,
            id,
            Dir::Original,
            ACK | PSH,
            3,
            TcpState::CloseWait,
        );
        step(&mut tb, id, Dir::Original, FIN | ACK, 4, TcpState::LastAck);
        step(&mut tb, id, Dir::Reply, ACK, 5, TcpState::TimeWait);
        assert!(tb.get(id).unwrap().assured);
    }

    #[test]
    fn tcp_fins_crossing() {
        let mut tb = Table::new(10);
        let id = established(&mut tb, 3);
        step(&mut tb, id, Dir::Original, FIN | ACK, 1, TcpState::FinWait);
        step(&mut tb, id, Dir::Reply, FIN | ACK, 1, TcpState::LastAck);
        // A retransmitted FIN stays in LAST_ACK.
        step(&mut tb, id, Dir::Original, FIN | ACK, 2, TcpState::LastAck);
        step(&mut tb, id, Dir::Original, ACK, 3, TcpState::TimeWait);
        // Late FINs in TIME_WAIT are let through and change nothing.
        assert_eq!(
            tcp_step(Some(TcpState::TimeWait), Dir::Reply, FIN | ACK),
            TcpStep::Ignore
        );
    }

    #[test]
    fn tcp_rst_tears_down_every_state_either_way() {
        for s in ALL_TCP {
            for d in [Dir::Original, Dir::Reply] {
                for f in [RST, RST | ACK] {
                    assert_eq!(
                        tcp_step(Some(s), d, f),
                        TcpStep::To(TcpState::Close),
                        "{s:?} {d:?} {f:#x}"
                    );
                }
            }
        }
        // Torn down: CLOSE for 10 s, then gone; late segments are let through until then.
        let mut tb = Table::new(10);
        let id = established(&mut tb, 4);
        step(&mut tb, id, Dir::Original, RST, 100, TcpState::Close);
        assert_eq!(tb.track(id, Dir::Reply, &tcpk(ACK), 40, 200), Ok(()));
        assert_eq!(
            tb.track(id, Dir::Reply, &tcpk(SYN | ACK), 40, 200),
            Err(Invalid)
        );
        assert_eq!(state(&tb, id), State::Tcp(TcpState::Close));
        assert_eq!(tb.expire(10_199, |_| {}), 0);
        assert_eq!(tb.expire(10_200, |_| {}), 1);
        assert!(tb.lookup(&t(4)).is_none());
        // A SYN on a reset flow starts a new connection instead.
        let id = established(&mut tb, 5);
        step(&mut tb, id, Dir::Reply, RST | ACK, 1, TcpState::Close);
        assert!(tb.reopens(id, Dir::Original, &tcpk(SYN)));
    }

    #[test]
    fn tcp_syn_recv_on_reply_syn_ack_and_on_simultaneous_open() {
        // Standard open: the reply side's SYN-ACK.
        let mut tb = Table::new(10);
        let o = t(6);
        let id = tb
            .insert(o, o.reverse(), State::Tcp(TcpState::SynSent), 60, 0)
            .unwrap();
        step(&mut tb, id, Dir::Original, SYN, 1, TcpState::SynSent);
        step(&mut tb, id, Dir::Reply, SYN | ACK, 2, TcpState::SynRecv);
        step(&mut tb, id, Dir::Reply, SYN | ACK, 3, TcpState::SynRecv);
        step(&mut tb, id, Dir::Original, ACK, 4, TcpState::Established);
        // Simultaneous open: a SYN each way, then SYN-ACKs each way, then ACKs.
        for first_synack in [Dir::Original, Dir::Reply] {
            let mut tb = Table::new(10);
            let id = tb
                .insert(o, o.reverse(), State::Tcp(TcpState::SynSent), 60, 0)
                .unwrap();
            step(&mut tb, id, Dir::Reply, SYN, 1, TcpState::SynSent2);
            step(&mut tb, id, Dir::Reply, SYN, 2, TcpState::SynSent2);
            step(&mut tb, id, Dir::Original, SYN, 2, TcpState::SynSent2);
            assert_eq!(tb.track(id, Dir::Original, &tcpk(ACK), 40, 3), Err(Invalid));
            assert_eq!(tb.track(id, Dir::Reply, &tcpk(FIN), 40, 3), Err(Invalid));
            step(&mut tb, id, first_synack, SYN | ACK, 3, TcpState::SynRecv);
            let other = match first_synack {
                Dir::Original => Dir::Reply,
                Dir::Reply => Dir::Original,
            };
            step(&mut tb, id, other, SYN | ACK, 4, TcpState::SynRecv);
            assert!(!tb.get(id).unwrap().assured);
            step(&mut tb, id, Dir::Original, ACK, 5, TcpState::Established);
            assert!(tb.get(id).unwrap().assured);
        }
        // A reply SYN is only a simultaneous open while ours is unanswered.
        for s in [TcpState::SynRecv, TcpState::Established, TcpState::FinWait] {
            assert_eq!(tcp_step(Some(s), Dir::Reply, SYN), TcpStep::Invalid);
        }
    }

    #[test]
    fn tcp_invalid_and_rst() {
        for f in [ACK, SYN | ACK, FIN, RST, PSH, 0, SYN | FIN] {
            assert_eq!(State::initial(&tcpk(f)), None, "flags {f:#x}");
        }
        assert_eq!(tcp_step(None, Dir::Reply, SYN), TcpStep::Invalid);
        assert_eq!(
            tcp_step(Some(TcpState::SynSent), Dir::Original, ACK),
            TcpStep::Invalid
        );
        assert_eq!(
            tcp_step(Some(TcpState::Established), Dir::Reply, SYN),
            TcpStep::Invalid
        );
        assert_eq!(
            tcp_step(Some(TcpState::Established), Dir::Original, PSH),
            TcpStep::Invalid
        );
        assert_eq!(
            tcp_step(Some(TcpState::Established), Dir::Original, SYN),
            TcpStep::Ignore
        );
        let mut tb = Table::new(10);
        let id = tb
            .insert(t(1), t(1).reverse(), State::Tcp(TcpState::SynSent), 60, 0)
            .unwrap();
        // An invalid packet changes nothing, not even the counters.
        let before = tb.get(id).unwrap().clone();
        assert_eq!(tb.track(id, Dir::Original, &tcpk(FIN), 40, 5), Err(Invalid));
        assert_eq!(tb.track(id, Dir::Original, &Kind::Udp, 40, 5), Err(Invalid));
        assert_eq!(tb.get(id).unwrap(), &before);
        // RST in reply to a SYN: connection refused, closed for 10 s.
        tb.track(id, Dir::Reply, &tcpk(RST | ACK), 40, 5).unwrap();
        assert_eq!(state(&tb, id), State::Tcp(TcpState::Close));
        assert_eq!(tb.get(id).unwrap().deadline, 10_005);
    }

    #[test]
    fn udp_and_icmp_timeouts() {
        let mut tb = Table::new(10);
        let u = Tuple::new(Proto::Udp, t(5).src, t(5).dst);
        let id = tb.insert(u, u.reverse(), State::Udp, 40, 0).unwrap();
        assert_eq!(tb.get(id).unwrap().deadline, 30_000);
        tb.track(id, Dir::Original, &Kind::Udp, 40, 1000).unwrap();
        assert_eq!(tb.get(id).unwrap().deadline, 31_000);
        tb.track(id, Dir::Reply, &Kind::Udp, 40, 2000).unwrap();
        assert_eq!(tb.get(id).unwrap().deadline, 122_000);
        assert!(tb.get(id).unwrap().assured);
        let i = Tuple::new(
            Proto::Icmp,
            Endpoint::new(u.src.addr, 9),
            Endpoint::new(u.dst.addr, 0),
        );
        let id = tb.insert(i, i.reverse(), State::Icmp, 84, 0).unwrap();
        assert_eq!(tb.get(id).unwrap().deadline, 30_000);
        assert_eq!(
            tb.track(id, Dir::Reply, &Kind::Echo { request: true }, 84, 1),
            Err(Invalid)
        );
        tb.track(id, Dir::Reply, &Kind::Echo { request: false }, 84, 1)
            .unwrap();
        assert_eq!(State::initial(&Kind::Echo { request: false }), None);
    }

    #[test]
    fn limit_refuses_and_counts_existing_keep_working() {
        let mut tb = Table::new(2);
        let a = tb.insert(t(1), t(1).reverse(), State::Udp, 1, 0).unwrap();
        tb.insert(t(2), t(2).reverse(), State::Udp, 1, 0).unwrap();
        assert_eq!(
            tb.insert(t(3), t(3).reverse(), State::Udp, 1, 0),
            Err(InsertError::Full)
        );
        assert_eq!(
            tb.insert(t(1), t(9).reverse(), State::Udp, 1, 0),
            Err(InsertError::Exists)
        );
        assert_eq!(
            tb.insert(t(8), t(8), State::Udp, 1, 0),
            Err(InsertError::Exists)
        );
        assert_eq!(tb.refused(), 1);
        assert_eq!(tb.len(), 2);
        assert!(tb.lookup(&t(1)).is_some());
        tb.remove(a).unwrap();
        assert!(tb.lookup(&t(1)).is_none() && tb.lookup(&t(1).reverse()).is_none());
        tb.insert(t(3), t(3).reverse(), State::Udp, 1, 0).unwrap();
        assert_eq!(tb.len(), 2);
        tb.flush();
        assert!(tb.is_empty() && tb.iter().next().is_none() && tb.lookup(&t(3)).is_none());
        assert_eq!(tb.refused(), 1);
    }

    #[test]
    fn full_table_evicts_an_unassured_flow_never_an_assured_one() {
        let syn = State::Tcp(TcpState::SynSent);
        let mut tb = Table::new(3);
        let est = established(&mut tb, 1);
        tb.insert(t(2), t(2).reverse(), syn, 60, 10).unwrap();
        tb.insert(t(3), t(3).reverse(), syn, 60, 5).unwrap();
        // Plain insert still refuses.
        assert_eq!(
            tb.insert(t(4), t(4).reverse(), syn, 60, 30),
            Err(InsertError::Full)
        );
        // The half-open flow nearest its deadline goes, the new one takes its place.
        let mut gone = Vec::new();
        tb.insert_evicting(t(4), t(4).reverse(), syn, 60, 30, |e| gone.push(e.orig))
            .unwrap();
        assert_eq!(gone, [t(3)]);
        assert_eq!((tb.len(), tb.evicted(), tb.refused()), (3, 1, 1));
        assert!(tb.get(est).is_some() && tb.lookup(&t(3)).is_none());
        // A tuple already tracked is refused before anything is evicted.
        assert_eq!(
            tb.insert_evicting(t(4), t(9).reverse(), syn, 60, 31, |_| panic!("evicted")),
            Err(InsertError::Exists)
        );
        // Only assured flows: nothing is evicted, the new flow is refused.
        let mut tb = Table::new(2);
        let a = established(&mut tb, 1);
        let b = established(&mut tb, 2);
        assert_eq!(
            tb.insert_evicting(t(3), t(3).reverse(), syn, 60, 1, |_| panic!("evicted")),
            Err(InsertError::Full)
        );
        assert_eq!((tb.len(), tb.evicted(), tb.refused()), (2, 0, 1));
        // An expired flow goes first, assured or not.
        tb.track(a, Dir::Original, &tcpk(RST), 40, 1).unwrap();
        tb.track(b, Dir::Original, &tcpk(ACK), 40, 20_000).unwrap();
        let mut gone = Vec::new();
        tb.insert_evicting(t(3), t(3).reverse(), syn, 60, 20_000, |e| gone.push(e.orig))
            .unwrap();
        assert_eq!(gone, [t(1)]);
        // Above a lowered limit, nothing is evicted and new flows wait for room.
        tb.insert(t(5), t(5).reverse(), syn, 60, 20_000)
            .unwrap_err();
        tb.set_limit(1);
        assert_eq!(
            tb.insert_evicting(t(6), t(6).reverse(), syn, 60, 20_000, |_| panic!("evicted")),
            Err(InsertError::Full)
        );
        assert_eq!(tb.len(), 2);
    }

    #[test]
    fn a_syn_flood_cannot_lock_new_flows_out() {
        // A full table of half-open flows (spoofed SYNs) and one established connection:
        // every new flow gets in, the established one is never evicted, the table never
        // grows, and each eviction costs a bounded scan.
        let limit = 1000;
        let mut tb = Table::new(limit);
        let est = established(&mut tb, 0);
        let syn = State::Tcp(TcpState::SynSent);
        for p in 1..limit as u16 {
            tb.insert(t(p), t(p).reverse(), syn, 60, u64::from(p))
                .unwrap();
        }
        for p in 2000..6000u16 {
            tb.insert_evicting(t(p), t(p).reverse(), syn, 60, u64::from(p), |e| {
                assert!(!e.assured)
            })
            .unwrap();
            assert_eq!(tb.len(), limit);
        }
        assert!(tb.get(est).is_some());
        assert_eq!((tb.evicted(), tb.refused()), (4000, 0));
        assert!(tb.slots.len() <= limit);
    }

    #[test]
    fn remove_if_hands_over_what_it_removes() {
        let mut tb = Table::new(10);
        for p in 0..6 {
            tb.insert(t(p), t(p).reverse(), State::Udp, 1, 0).unwrap();
        }
        let mut gone = Vec::new();
        assert_eq!(
            tb.remove_if(|e| e.orig.src.port % 2 == 0, |e| gone.push(e.orig.src.port)),
            3
        );
        gone.sort_unstable();
        assert_eq!(gone, [0, 2, 4]);
        assert_eq!(tb.len(), 3);
        assert!(tb.lookup(&t(2)).is_none() && tb.lookup(&t(3)).is_some());
    }

    #[test]
    fn expiry_bounded_and_full() {
        let mut tb = Table::new(100);
        for p in 0..10 {
            let id = tb.insert(t(p), t(p).reverse(), State::Udp, 1, 0).unwrap();
            if p % 2 == 0 {
                tb.track(id, Dir::Reply, &Kind::Udp, 1, 0).unwrap();
            }
        }
        let mut gone = Vec::new();
        assert_eq!(tb.expire_some(30_000, 4, |e| gone.push(e.orig)), 2);
        assert_eq!(gone, vec![t(1), t(3)]);
        assert_eq!(tb.expire_some(30_000, 4, |_| {}), 2);
        assert_eq!(tb.expire(30_000, |_| {}), 1);
        assert_eq!(tb.len(), 5);
        assert_eq!(tb.expire(119_999, |_| {}), 0);
        assert_eq!(tb.expire(120_000, |_| {}), 5);
        assert!(tb.is_empty());
        assert_eq!(tb.expire_some(0, 1000, |_| {}), 0);
    }

    proptest! {
        #[test]
        fn never_exceeds_limit(limit in 0usize..64, ops in proptest::collection::vec((any::<u16>(), any::<bool>(), 0u64..200_000), 0..400)) {
            let mut tb = Table::new(limit);
            let mut refused = 0u64;
            for (p, rm, now) in ops {
                match tb.insert(t(p), t(p).reverse(), State::Udp, 1, now) {
                    Err(InsertError::Full) => refused += 1,
                    Ok(id) if rm => { tb.remove(id); }
                    _ => {}
                }
                if now % 7 == 0 { tb.expire_some(now, 3, |_| {}); }
                prop_assert!(tb.len() <= limit);
                prop_assert_eq!(tb.iter().count(), tb.len());
            }
            prop_assert_eq!(tb.refused(), refused);
        }

        #[test]
        fn evicting_never_exceeds_limit_nor_drops_an_assured_flow(limit in 0usize..32, ops in proptest::collection::vec((any::<u16>(), any::<bool>(), 0u64..200_000), 0..400)) {
            let mut tb = Table::new(limit);
            for (p, answer, now) in ops {
                let ok = tb.insert_evicting(t(p), t(p).reverse(), State::Udp, 1, now, |e| {
                    assert!(!e.assured || e.is_expired(now), "evicted a live assured flow");
                });
                if let (Ok(id), true) = (ok, answer) {
                    tb.track(id, Dir::Reply, &Kind::Udp, 1, now).unwrap();
                }
                prop_assert!(tb.len() <= limit);
                prop_assert!(tb.slots.len() <= limit);
            }
        }

        #[test]
        fn state_machine_is_total(s in proptest::option::of(0usize..ALL_TCP.len()), orig in any::<bool>(), flags in any::<u8>()) {
            let st = s.map(|i| ALL_TCP[i]);
            let d = if orig { Dir::Original } else { Dir::Reply };
            let step = tcp_step(st, d, flags);
            if flags & RST != 0 && st.is_some() { prop_assert_eq!(step, TcpStep::To(TcpState::Close)); }
        }
    }
}
