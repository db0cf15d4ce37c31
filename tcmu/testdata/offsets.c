/*
 * offsets.c prints, for every constant in tcmu/abi.go, the value the C
 * compiler computes from <linux/target_core_user.h>: "name value" per line.
 * TestOffsetsMatchKernelHeader builds and runs it and compares.
 */
#include <stddef.h>
#include <stdio.h>
#include <linux/target_core_user.h>

#define P(name, v) printf("%s %llu\n", name, (unsigned long long)(v))
#define OFF(name, type, field) P(name, offsetof(type, field))
#define SIZE(name, type, field) P("sizeof." name, sizeof(((type *)0)->field))

int main(void)
{
	struct tcmu_cmd_entry e;

	OFF("mbVersion", struct tcmu_mailbox, version);
	OFF("mbFlags", struct tcmu_mailbox, flags);
	OFF("mbCmdrOff", struct tcmu_mailbox, cmdr_off);
	OFF("mbCmdrSize", struct tcmu_mailbox, cmdr_size);
	OFF("mbCmdHead", struct tcmu_mailbox, cmd_head);
	OFF("mbCmdTail", struct tcmu_mailbox, cmd_tail);
	P("mbSize", sizeof(struct tcmu_mailbox));
	SIZE("mbVersion", struct tcmu_mailbox, version);
	SIZE("mbFlags", struct tcmu_mailbox, flags);
	SIZE("mbCmdrOff", struct tcmu_mailbox, cmdr_off);
	SIZE("mbCmdrSize", struct tcmu_mailbox, cmdr_size);
	SIZE("mbCmdHead", struct tcmu_mailbox, cmd_head);
	SIZE("mbCmdTail", struct tcmu_mailbox, cmd_tail);
	P("mailboxVersion", TCMU_MAILBOX_VERSION);

	P("mbFlagCapOOOC", TCMU_MAILBOX_FLAG_CAP_OOOC);
	P("mbFlagCapReadLen", TCMU_MAILBOX_FLAG_CAP_READ_LEN);
	P("mbFlagCapTMR", TCMU_MAILBOX_FLAG_CAP_TMR);
	P("mbFlagCapKeepBuf", TCMU_MAILBOX_FLAG_CAP_KEEP_BUF);

	OFF("hdrLenOp", struct tcmu_cmd_entry_hdr, len_op);
	OFF("hdrCmdID", struct tcmu_cmd_entry_hdr, cmd_id);
	OFF("hdrKflags", struct tcmu_cmd_entry_hdr, kflags);
	OFF("hdrUflags", struct tcmu_cmd_entry_hdr, uflags);
	P("hdrSize", sizeof(struct tcmu_cmd_entry_hdr));
	SIZE("hdrLenOp", struct tcmu_cmd_entry_hdr, len_op);
	SIZE("hdrCmdID", struct tcmu_cmd_entry_hdr, cmd_id);
	SIZE("hdrKflags", struct tcmu_cmd_entry_hdr, kflags);
	SIZE("hdrUflags", struct tcmu_cmd_entry_hdr, uflags);
	P("opMask", TCMU_OP_MASK);
	P("opAlign", TCMU_OP_ALIGN_SIZE);
	P("opPad", TCMU_OP_PAD);
	P("opCmd", TCMU_OP_CMD);
	P("opTMR", TCMU_OP_TMR);
	P("uflagUnknownOp", TCMU_UFLAG_UNKNOWN_OP);
	P("uflagReadLen", TCMU_UFLAG_READ_LEN);
	P("uflagKeepBuf", TCMU_UFLAG_KEEP_BUF);

	OFF("reqIovCnt", struct tcmu_cmd_entry, req.iov_cnt);
	OFF("reqIovBidiCnt", struct tcmu_cmd_entry, req.iov_bidi_cnt);
	OFF("reqIovDifCnt", struct tcmu_cmd_entry, req.iov_dif_cnt);
	OFF("reqCdbOff", struct tcmu_cmd_entry, req.cdb_off);
	OFF("reqIov", struct tcmu_cmd_entry, req.iov);
	SIZE("reqIovCnt", struct tcmu_cmd_entry, req.iov_cnt);
	SIZE("reqIovBidiCnt", struct tcmu_cmd_entry, req.iov_bidi_cnt);
	SIZE("reqIovDifCnt", struct tcmu_cmd_entry, req.iov_dif_cnt);
	SIZE("reqCdbOff", struct tcmu_cmd_entry, req.cdb_off);
	OFF("iovBase", struct iovec, iov_base);
	OFF("iovLen", struct iovec, iov_len);
	P("iovSize", sizeof(struct iovec));
	SIZE("iovBase", struct iovec, iov_base);
	SIZE("iovLen", struct iovec, iov_len);
	P("entSize", sizeof(struct tcmu_cmd_entry));

	OFF("rspStatus", struct tcmu_cmd_entry, rsp.scsi_status);
	OFF("rspReadLen", struct tcmu_cmd_entry, rsp.read_len);
	OFF("rspSense", struct tcmu_cmd_entry, rsp.sense_buffer);
	SIZE("rspStatus", struct tcmu_cmd_entry, rsp.scsi_status);
	SIZE("rspReadLen", struct tcmu_cmd_entry, rsp.read_len);
	P("senseBufLen", sizeof(e.rsp.sense_buffer));
	P("TCMU_SENSE_BUFFERSIZE", TCMU_SENSE_BUFFERSIZE);

	OFF("tmrType", struct tcmu_tmr_entry, tmr_type);
	OFF("tmrCmdCnt", struct tcmu_tmr_entry, cmd_cnt);
	OFF("tmrCmdIDs", struct tcmu_tmr_entry, cmd_ids);
	SIZE("tmrType", struct tcmu_tmr_entry, tmr_type);
	SIZE("tmrCmdCnt", struct tcmu_tmr_entry, cmd_cnt);
	SIZE("tmrCmdIDs", struct tcmu_tmr_entry, cmd_ids[0]);
	P("tmrEntSize", sizeof(struct tcmu_tmr_entry));

	P("TMRUnknown", TCMU_TMR_UNKNOWN);
	P("TMRAbortTask", TCMU_TMR_ABORT_TASK);
	P("TMRAbortTaskSet", TCMU_TMR_ABORT_TASK_SET);
	P("TMRClearACA", TCMU_TMR_CLEAR_ACA);
	P("TMRClearTaskSet", TCMU_TMR_CLEAR_TASK_SET);
	P("TMRLUNReset", TCMU_TMR_LUN_RESET);
	P("TMRTargetWarmReset", TCMU_TMR_TARGET_WARM_RESET);
	P("TMRTargetColdReset", TCMU_TMR_TARGET_COLD_RESET);
	P("TMRLUNResetPRO", TCMU_TMR_LUN_RESET_PRO);
	return 0;
}
