// The x86-64 CPU: the target-independent part ("cpu_common") and the x86 register file ("cpu")
// with its optional MSR and extension state (QEMU 7.2: cpu.c, target/i386/machine.c), one pair
// of sections per vCPU (instance = CPU index). State keys, and those that are not on the wire:
// docs/vmstate.md, "Device notes".
import { F } from "../fields.js";
import type { State, VMStateDescription } from "../types.js";

/**
 * CPUState: halted and the interrupt request bits; the pending exception (TCG) and the
 * crash flag travel only when set. A load starts with no pending exception (-1).
 */
export const cpuCommon: VMStateDescription = {
  name: "cpu_common",
  version: 1,
  minimumVersion: 1,
  preLoad: (s) => {
    s.exception_index = -1;
  },
  fields: [F.uint32("halted"), F.uint32("interrupt_request")],
  subsections: [
    {
      name: "cpu_common/exception_index",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => (s.exception_index ?? -1) !== -1,
      fields: [F.int32("exception_index")],
    },
    {
      name: "cpu_common/crash_occurred",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => s.crash_occurred === true,
      fields: [F.bool("crash_occurred")],
    },
  ],
};

/** General-purpose / vector registers on x86-64. */
export const CPU_NB_REGS = 16;
const MCE_BANKS_DEF = 10;
const MSR_MTRRCAP_VCNT = 8;
const MAX_FIXED_COUNTERS = 3;
const MAX_GP_COUNTERS = 18;
const HV_CRASH_PARAMS = 5;
const HV_SINT_COUNT = 16;
const HV_STIMER_COUNT = 4;
const NB_OPMASK_REGS = 8;
const MAX_RTIT_ADDRS = 8;
const ARCH_LBR_NR_ENTRIES = 32;
const KVM_STATE_NESTED_VMCS_SIZE = 4096;
const MSR_IA32_MISC_ENABLE_DEFAULT = 1n;
const HF_GUEST_MASK = 1 << 21;
const HF2_NPT_MASK = 1 << 6;
const HV_REENLIGHTENMENT_ENABLE_BIT = 1n << 16n;
/** Offset of the data area after the header of struct kvm_nested_state. */
const KVM_NESTED_STATE_HEADER = 128;
const KVM_STATE_NESTED_FORMAT_VMX = 0;
const KVM_STATE_NESTED_FORMAT_SVM = 1;

/** A segment register's hidden part. */
export const segment: VMStateDescription = {
  name: "segment",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint32("selector"), F.uint64("base"), F.uint32("limit"), F.uint32("flags")],
};

/** One x87 register as sent: 64-bit mantissa and 16-bit sign+exponent (state: {mant, exp}). */
const fpregTmp: VMStateDescription = {
  name: "fpreg_tmp",
  version: 0,
  fields: [F.uint64("tmp_mant"), F.uint16("tmp_exp")],
};

export const fpreg: VMStateDescription = {
  name: "fpreg",
  version: 0,
  fields: [
    F.tmp(
      fpregTmp,
      (reg) => ({ tmp_mant: reg.mant ?? 0n, tmp_exp: reg.exp ?? 0 }),
      (reg, tmp) => {
        reg.mant = tmp.tmp_mant;
        reg.exp = tmp.tmp_exp;
      },
    ),
  ],
};

/** Quadwords `from`..`to` of a 512-bit vector register (the C names of its 64-bit lanes). */
function zmmLanes(name: string, from: number, to: number): VMStateDescription {
  const fields = [];
  for (let q = from; q <= to; q++) fields.push(F.uint64(`_q_ZMMReg[${q}]`));
  return { name, version: 1, minimumVersion: 1, fields };
}
/** XMM (lanes 0-1), the upper YMM half (2-3), the upper ZMM half (4-7), and all of ZMM16-31. */
export const xmmReg = zmmLanes("xmm_reg", 0, 1);
export const ymmhReg = zmmLanes("ymmh_reg", 2, 3);
export const zmmhReg = zmmLanes("zmmh_reg", 4, 7);
export const hi16ZmmReg = zmmLanes("hi16_zmm_reg", 0, 7);

export const mtrrVar: VMStateDescription = {
  name: "mtrr_var",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint64("base"), F.uint64("mask")],
};

const bndRegs: VMStateDescription = {
  name: "bnd_regs",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint64("lb"), F.uint64("ub")],
};

const lbrRecord: VMStateDescription = {
  name: "lbr_records_var",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint64("from"), F.uint64("to"), F.uint64("info")],
};

// ---- optional parts ----------------------------------------------------------------------------

const nz = (v: number | bigint | undefined): boolean => v !== undefined && v !== 0 && v !== 0n;
const anyNz = (a: readonly (number | bigint)[] | undefined): boolean => (a ?? []).some(nz);

/** A subsection of one uint64 MSR sent while it is not zero. */
function msr64(name: string, field: string): VMStateDescription {
  return { name, version: 1, minimumVersion: 1, needed: (s: State) => nz(s[field]), fields: [F.uint64(field)] };
}

/** KVM nested virtualisation state (vmx/svm), kept by the kernel; absent on TCG. */
const kvmNestedState: VMStateDescription = {
  name: "cpu/kvm_nested_state",
  version: 1,
  minimumVersion: 1,
  fields: [F.uint16("flags"), F.uint16("format"), F.uint32("size")],
  subsections: [
    {
      name: "cpu/kvm_nested_state/vmx",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => s.format === KVM_STATE_NESTED_FORMAT_VMX && BigInt.asUintN(64, s["hdr.vmx.vmxon_pa"] ?? -1n) !== 0xffffffffffffffffn,
      fields: [F.uint64("hdr.vmx.vmxon_pa"), F.uint64("hdr.vmx.vmcs12_pa"), F.uint16("hdr.vmx.smm.flags")],
      subsections: [
        {
          name: "cpu/kvm_nested_state/vmx/vmcs12",
          version: 1,
          minimumVersion: 1,
          needed: (s: State) => (s.size ?? 0) > KVM_NESTED_STATE_HEADER,
          fields: [F.array("data.vmx[0].vmcs12", "uint8", KVM_STATE_NESTED_VMCS_SIZE)],
        },
        {
          name: "cpu/kvm_nested_state/vmx/shadow_vmcs12",
          version: 1,
          minimumVersion: 1,
          needed: (s: State) => (s.size ?? 0) > KVM_NESTED_STATE_HEADER + KVM_STATE_NESTED_VMCS_SIZE,
          fields: [F.array("data.vmx[0].shadow_vmcs12", "uint8", KVM_STATE_NESTED_VMCS_SIZE)],
        },
      ],
    },
    {
      name: "cpu/kvm_nested_state/svm",
      version: 1,
      minimumVersion: 1,
      needed: (s: State) => s.format === KVM_STATE_NESTED_FORMAT_SVM && (s.size ?? 0) > KVM_NESTED_STATE_HEADER,
      fields: [F.uint64("hdr.svm.vmcb_pa"), F.array("data.svm[0].vmcb12", "uint8", KVM_STATE_NESTED_VMCS_SIZE)],
    },
  ],
};

const nestedStateNeeded = (n: State | undefined): boolean => n !== undefined && (kvmNestedState.subsections ?? []).some((sub) => sub.needed!(n));

/** The optional parts of "cpu", in the order QEMU 7.2 sends them (x86-64 build with KVM support). */
const cpuSubsections: readonly VMStateDescription[] = [
  {
    name: "cpu/exception_info",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => nz(s["env.exception_pending"]) && ((s["env.hflags"] ?? 0) & HF_GUEST_MASK) !== 0,
    fields: [F.uint8("env.exception_pending"), F.uint8("env.exception_injected"), F.uint8("env.exception_has_payload"), F.uint64("env.exception_payload")],
  },
  msr64("cpu/async_pf_msr", "env.async_pf_en_msr"),
  msr64("cpu/async_pf_int_msr", "env.async_pf_int_msr"),
  msr64("cpu/async_pv_eoi_msr", "env.pv_eoi_en_msr"),
  msr64("cpu/steal_time_msr", "env.steal_time_msr"),
  {
    // The poll-control MSR resets to 1 (polling enabled).
    name: "cpu/poll_control_msr",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => (s["env.poll_control_msr"] ?? 1n) !== 1n,
    fields: [F.uint64("env.poll_control_msr")],
  },
  {
    name: "cpu/fpop_ip_dp",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => nz(s["env.fpop"]) || nz(s["env.fpip"]) || nz(s["env.fpdp"]),
    fields: [F.uint16("env.fpop"), F.uint64("env.fpip"), F.uint64("env.fpdp")],
  },
  msr64("cpu/msr_tsc_adjust", "env.tsc_adjust"),
  msr64("cpu/msr_tscdeadline", "env.tsc_deadline"),
  {
    name: "cpu/msr_ia32_misc_enable",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => (s["env.msr_ia32_misc_enable"] ?? MSR_IA32_MISC_ENABLE_DEFAULT) !== MSR_IA32_MISC_ENABLE_DEFAULT,
    fields: [F.uint64("env.msr_ia32_misc_enable")],
  },
  msr64("cpu/msr_ia32_feature_control", "env.msr_ia32_feature_control"),
  {
    name: "cpu/msr_architectural_pmu",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) =>
      nz(s["env.msr_fixed_ctr_ctrl"]) ||
      nz(s["env.msr_global_ctrl"]) ||
      nz(s["env.msr_global_status"]) ||
      nz(s["env.msr_global_ovf_ctrl"]) ||
      anyNz(s["env.msr_fixed_counters"]) ||
      anyNz(s["env.msr_gp_counters"]) ||
      anyNz(s["env.msr_gp_evtsel"]),
    fields: [
      F.uint64("env.msr_fixed_ctr_ctrl"),
      F.uint64("env.msr_global_ctrl"),
      F.uint64("env.msr_global_status"),
      F.uint64("env.msr_global_ovf_ctrl"),
      F.array("env.msr_fixed_counters", "uint64", MAX_FIXED_COUNTERS),
      F.array("env.msr_gp_counters", "uint64", MAX_GP_COUNTERS),
      F.array("env.msr_gp_evtsel", "uint64", MAX_GP_COUNTERS),
    ],
  },
  {
    name: "cpu/mpx",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) =>
      ((s["env.bnd_regs"] ?? []) as State[]).some((r) => nz(r.lb) || nz(r.ub)) ||
      nz(s["env.bndcs_regs.cfgu"]) ||
      nz(s["env.bndcs_regs.sts"]) ||
      nz(s["env.msr_bndcfgs"]),
    fields: [F.structArray("env.bnd_regs", bndRegs, 4), F.uint64("env.bndcs_regs.cfgu"), F.uint64("env.bndcs_regs.sts"), F.uint64("env.msr_bndcfgs")],
  },
  {
    name: "cpu/msr_hyperv_hypercall",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => nz(s["env.msr_hv_hypercall"]) || nz(s["env.msr_hv_guest_os_id"]),
    fields: [F.uint64("env.msr_hv_guest_os_id"), F.uint64("env.msr_hv_hypercall")],
  },
  msr64("cpu/msr_hyperv_vapic", "env.msr_hv_vapic"),
  msr64("cpu/msr_hyperv_time", "env.msr_hv_tsc"),
  {
    name: "cpu/msr_hyperv_crash",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => anyNz(s["env.msr_hv_crash_params"]),
    fields: [F.array("env.msr_hv_crash_params", "uint64", HV_CRASH_PARAMS)],
  },
  {
    // Only with the hv-runtime enlightenment (state key `hv_runtime`, default off).
    name: "cpu/msr_hyperv_runtime",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => s.hv_runtime === true && nz(s["env.msr_hv_runtime"]),
    fields: [F.uint64("env.msr_hv_runtime")],
  },
  {
    name: "cpu/msr_hyperv_synic",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) =>
      nz(s["env.msr_hv_synic_control"]) || nz(s["env.msr_hv_synic_evt_page"]) || nz(s["env.msr_hv_synic_msg_page"]) || anyNz(s["env.msr_hv_synic_sint"]),
    fields: [
      F.uint64("env.msr_hv_synic_control"),
      F.uint64("env.msr_hv_synic_evt_page"),
      F.uint64("env.msr_hv_synic_msg_page"),
      F.array("env.msr_hv_synic_sint", "uint64", HV_SINT_COUNT),
    ],
  },
  {
    name: "cpu/msr_hyperv_stimer",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => anyNz(s["env.msr_hv_stimer_config"]) || anyNz(s["env.msr_hv_stimer_count"]),
    fields: [F.array("env.msr_hv_stimer_config", "uint64", HV_STIMER_COUNT), F.array("env.msr_hv_stimer_count", "uint64", HV_STIMER_COUNT)],
  },
  {
    // A guest that enabled re-enlightenment needs a fixed TSC frequency on the destination
    // (state key `user_tsc_khz`, the tsc-frequency property; 0 = not given).
    name: "cpu/msr_hyperv_reenlightenment",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => nz(s["env.msr_hv_reenlightenment_control"]) || nz(s["env.msr_hv_tsc_emulation_control"]) || nz(s["env.msr_hv_tsc_emulation_status"]),
    postLoad: (s) => {
      if ((BigInt(s["env.msr_hv_reenlightenment_control"] ?? 0n) & HV_REENLIGHTENMENT_ENABLE_BIT) !== 0n && !s.user_tsc_khz) {
        return "the guest enabled re-enlightenment notifications: the destination needs tsc-frequency";
      }
    },
    fields: [F.uint64("env.msr_hv_reenlightenment_control"), F.uint64("env.msr_hv_tsc_emulation_control"), F.uint64("env.msr_hv_tsc_emulation_status")],
  },
  {
    name: "cpu/avx512",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => {
      if (anyNz(s["env.opmask_regs"])) return true;
      const lanes = (r: State | undefined, from: number, to: number): boolean => {
        for (let q = from; q <= to; q++) if (nz(r?.[`_q_ZMMReg[${q}]`])) return true;
        return false;
      };
      for (let i = 0; i < CPU_NB_REGS; i++) {
        if (lanes(s["env.xmm_regs"]?.[i], 4, 7) || lanes(s.hi16_zmm_regs?.[i], 0, 7)) return true;
      }
      return false;
    },
    fields: [
      F.array("env.opmask_regs", "uint64", NB_OPMASK_REGS),
      F.structArray("env.xmm_regs", zmmhReg, CPU_NB_REGS),
      // ZMM16-31 (elements 16..31 of the same C array), kept under their own key.
      F.structArray("env.xmm_regs", hi16ZmmReg, CPU_NB_REGS, { key: "hi16_zmm_regs" }),
    ],
  },
  msr64("cpu/xss", "env.xss"),
  {
    name: "cpu/umwait",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => nz(s["env.umwait"]),
    fields: [F.uint32("env.umwait")],
  },
  {
    // Sent when the machine records the TSC frequency (`save_tsc_khz`, true on 7.2 machines).
    name: "cpu/tsc_khz",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => nz(s["env.tsc_khz"]) && (s.save_tsc_khz ?? true),
    fields: [F.int64("env.tsc_khz")],
  },
  {
    // Sent when the CPU's x-migrate-smi-count property is on (`migrate_smi_count`, true on 7.2).
    name: "cpu/msr_smi_count",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => (s.migrate_smi_count ?? true) && nz(s["env.msr_smi_count"]),
    fields: [F.uint64("env.msr_smi_count")],
  },
  {
    name: "cpu/pkru",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => nz(s["env.pkru"]),
    fields: [F.uint32("env.pkru")],
  },
  {
    name: "cpu/pkrs",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => nz(s["env.pkrs"]),
    fields: [F.uint32("env.pkrs")],
  },
  msr64("cpu/spec_ctrl", "env.spec_ctrl"),
  {
    // CPU models with the SVM TSC-scaling feature (`cpuid_svm_tscscale`, off for qemu64).
    name: "cpu/amd_tsc_scale_msr",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => s.cpuid_svm_tscscale === true,
    fields: [F.uint64("env.amd_tsc_scale_msr")],
  },
  {
    // With local machine-check exceptions enabled (`enable_lmce`, off by default).
    name: "cpu/mcg_ext_ctl",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => s.enable_lmce === true && nz(s["env.mcg_ext_ctl"]),
    fields: [F.uint64("env.mcg_ext_ctl")],
  },
  {
    name: "cpu/intel_pt",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) =>
      nz(s["env.msr_rtit_ctrl"]) ||
      nz(s["env.msr_rtit_status"]) ||
      nz(s["env.msr_rtit_output_base"]) ||
      nz(s["env.msr_rtit_output_mask"]) ||
      nz(s["env.msr_rtit_cr3_match"]) ||
      anyNz(s["env.msr_rtit_addrs"]),
    fields: [
      F.uint64("env.msr_rtit_ctrl"),
      F.uint64("env.msr_rtit_status"),
      F.uint64("env.msr_rtit_output_base"),
      F.uint64("env.msr_rtit_output_mask"),
      F.uint64("env.msr_rtit_cr3_match"),
      F.array("env.msr_rtit_addrs", "uint64", MAX_RTIT_ADDRS),
    ],
  },
  msr64("cpu/virt_ssbd", "env.virt_ssbd"),
  {
    name: "cpu/svn_npt",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => ((s["env.hflags2"] ?? 0) & HF2_NPT_MASK) !== 0,
    fields: [F.uint64("env.nested_cr3"), F.uint32("env.nested_pg_mode")],
  },
  {
    // TCG only (`accel` "tcg" is assumed unless the state says "kvm").
    name: "cpu/svm_guest",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => (s.accel ?? "tcg") === "tcg" && nz(s["env.int_ctl"]),
    fields: [F.uint32("env.int_ctl")],
  },
  {
    name: "cpu/nested_state",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => nestedStateNeeded(s["env.nested_state"]),
    fields: [F.struct("env.nested_state", kvmNestedState)],
  },
  {
    // CPU models with TSX_CTRL in IA32_ARCH_CAPABILITIES (`cpuid_tsx_ctrl`).
    name: "cpu/msr_tsx_ctrl",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => s.cpuid_tsx_ctrl === true,
    fields: [F.uint32("env.tsx_ctrl")],
  },
  {
    // CPU models with SGX launch control (`cpuid_sgx_lc`).
    name: "cpu/intel_sgx",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => s.cpuid_sgx_lc === true,
    fields: [F.array("env.msr_ia32_sgxlepubkeyhash", "uint64", 4)],
  },
  {
    name: "cpu/pdptrs",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => s["env.pdptrs_valid"] === true,
    postLoad: (s) => {
      s["env.pdptrs_valid"] = true;
    },
    fields: [F.array("env.pdptrs", "uint64", 4)],
  },
  {
    // CPU models with XFD (`cpuid_xfd`).
    name: "cpu/msr_xfd",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => s.cpuid_xfd === true,
    fields: [F.uint64("env.msr_xfd"), F.uint64("env.msr_xfd_err")],
  },
  {
    // CPU models with AMX tiles (`cpuid_amx_tile`).
    name: "cpu/intel_amx_xtile",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => s.cpuid_amx_tile === true,
    fields: [F.array("env.xtilecfg", "uint8", 64), F.array("env.xtiledata", "uint8", 8192)],
  },
  {
    // CPU models with architectural LBRs (`cpuid_arch_lbr`).
    name: "cpu/arch_lbr",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => s.cpuid_arch_lbr === true,
    fields: [F.uint64("env.msr_lbr_ctl"), F.uint64("env.msr_lbr_depth"), F.structArray("env.lbr_records", lbrRecord, ARCH_LBR_NR_ENTRIES, { version: 1 })],
  },
  {
    name: "cpu/triple_fault",
    version: 1,
    minimumVersion: 1,
    needed: (s: State) => nz(s["env.triple_fault_pending"]),
    fields: [F.uint8("env.triple_fault_pending")],
  },
];

/**
 * The x86 CPU (idstr "cpu"): registers, FPU/SSE/AVX state, segment and control registers, SVM,
 * MTRRs, pending events, MCE banks and XSAVE. A load refuses the pre-softfloat x87 format
 * (`env.fpregs_format_vmstate` != 0).
 */
export const x86Cpu: VMStateDescription = {
  name: "cpu",
  version: 12,
  minimumVersion: 11,
  postLoad: (s) => {
    if (nz(s["env.fpregs_format_vmstate"])) return "unsupported old non-softfloat CPU state";
  },
  fields: [
    F.array("env.regs", "uint64", CPU_NB_REGS),
    F.uint64("env.eip"),
    F.uint64("env.eflags"),
    F.uint32("env.hflags"),
    F.uint16("env.fpuc"),
    F.uint16("env.fpus_vmstate"),
    F.uint16("env.fptag_vmstate"),
    F.uint16("env.fpregs_format_vmstate"),
    F.structArray("env.fpregs", fpreg, 8),
    F.structArray("env.segs", segment, 6),
    F.struct("env.ldt", segment),
    F.struct("env.tr", segment),
    F.struct("env.gdt", segment),
    F.struct("env.idt", segment),
    F.uint32("env.sysenter_cs"),
    F.uint64("env.sysenter_esp"),
    F.uint64("env.sysenter_eip"),
    F.uint64("env.cr[0]"),
    F.uint64("env.cr[2]"),
    F.uint64("env.cr[3]"),
    F.uint64("env.cr[4]"),
    F.array("env.dr", "uint64", 8),
    F.int32("env.a20_mask"),
    F.uint32("env.mxcsr"),
    // XMM0-15 lanes 0-1 here, lanes 2-3 (YMM upper halves) at the end: the same C array twice.
    F.structArray("env.xmm_regs", xmmReg, CPU_NB_REGS),
    F.uint64("env.efer"),
    F.uint64("env.star"),
    F.uint64("env.lstar"),
    F.uint64("env.cstar"),
    F.uint64("env.fmask"),
    F.uint64("env.kernelgsbase"),
    F.uint32("env.smbase"),
    F.uint64("env.pat"),
    F.uint32("env.hflags2"),
    F.uint64("env.vm_hsave"),
    F.uint64("env.vm_vmcb"),
    F.uint64("env.tsc_offset"),
    F.uint64("env.intercept"),
    F.uint16("env.intercept_cr_read"),
    F.uint16("env.intercept_cr_write"),
    F.uint16("env.intercept_dr_read"),
    F.uint16("env.intercept_dr_write"),
    F.uint32("env.intercept_exceptions"),
    F.uint8("env.v_tpr"),
    F.array("env.mtrr_fixed", "uint64", 11),
    F.uint64("env.mtrr_deftype"),
    F.structArray("env.mtrr_var", mtrrVar, MSR_MTRRCAP_VCNT, { version: 8 }),
    F.int32("env.interrupt_injected"),
    F.uint32("env.mp_state"),
    F.uint64("env.tsc"),
    F.int32("env.exception_nr"),
    F.uint8("env.soft_interrupt"),
    F.uint8("env.nmi_injected"),
    F.uint8("env.nmi_pending"),
    F.uint8("env.has_error_code"),
    F.uint32("env.sipi_vector"),
    F.uint64("env.mcg_cap"),
    F.uint64("env.mcg_status"),
    F.uint64("env.mcg_ctl"),
    F.array("env.mce_banks", "uint64", MCE_BANKS_DEF * 4),
    F.uint64("env.tsc_aux"),
    F.uint64("env.system_time_msr"),
    F.uint64("env.wall_clock_msr"),
    F.uint64("env.xcr0", { version: 12 }),
    F.uint64("env.xstate_bv", { version: 12 }),
    F.structArray("env.xmm_regs", ymmhReg, CPU_NB_REGS, { version: 12 }),
  ],
  subsections: cpuSubsections,
};
